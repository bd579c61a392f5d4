"""One request made with a key, as the usage service needs it, and its per-minute rollup.

`Request` is the decoded usage record reduced to what counting and detection use: times
are epoch seconds (floats are cheaper than datetimes at 50,000 records a second), the
source address is already its network (/24 for IPv4, /48 for IPv6).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence
from typing import NamedTuple, TypeVar

N = TypeVar("N", int, float)

AUTH_FAILURES = frozenset({401, 403})
MAX_NETWORKS_PER_MINUTE = 256
"""Distinct networks kept per rollup row; a botnet-sized minute is capped, not unbounded."""
TOKENS_CAP = 4 * 10**18
"""Where a stored token count stops growing: a saturating counter. The contract lets one
record carry 2**53 tokens each way, so about a thousand such records would overflow a
bigint, and the batch that did would fail to store, its valid records dead-lettered.
Capped, two stored counts still add up inside a bigint (2**63 - 1 > 2 * 4e18)."""
LATENCY_SUM_CAP = 1e300
"""The same for a stored sum of latencies (float8), which the contract lets reach the
largest float in one record: far enough below it that reads may add up many rows."""


def capped(values: Sequence[N], cap: N) -> Sequence[N]:
    """`values` held to `cap`; the list itself when none is over (the usual case: one pass
    in C rather than a comparison per value in Python)."""
    if not values or max(values) <= cap:
        return values
    return [min(v, cap) for v in values]


_MINUTES: dict[int, int] = {}


def shared_minute(minute: int) -> int:
    """One int object per minute in the process (what a key's state keeps of its requests'
    minutes: ~28 bytes each a key otherwise); at most 1,024 held, then forgotten at once."""
    held = _MINUTES.get(minute)
    if held is None:
        if len(_MINUTES) >= 1024:
            _MINUTES.clear()
        held = _MINUTES[minute] = minute
    return held


class Request(NamedTuple):
    record_id: str
    """Canonical lowercase uuid text."""
    key_id: str
    account_id: str
    at: float
    """occurred_at, epoch seconds (UTC)."""
    minute: int
    """occurred_at // 60: the event-time window the request belongs to."""
    network: str
    status_code: int
    tokens_in: int
    tokens_out: int
    latency_ms: float
    user_agent: str | None = None
    """Kept for the canary detector's evidence; no other detector reads it."""
    endpoint: str | None = None
    previous_secret: bool = False
    """Made with the secret a rotation replaced (the record's `secret: previous`)."""


def network_of(address: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) that `address` (canonical text) belongs to."""
    if ":" not in address:
        head, _, _ = address.rpartition(".")
        return f"{head}.0/24"
    return str(ipaddress.ip_network(f"{address}/48", strict=False))


@dataclasses.dataclass(slots=True)
class MinuteRollup:
    """Counters of one key in one minute; merged into the stored row by addition."""

    key_id: str
    account_id: str
    minute: int
    requests: int = 0
    status_2xx: int = 0
    status_3xx: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    auth_failures: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    latency_sum_ms: float = 0.0
    latency_max_ms: float = 0.0
    first_at: float = float("inf")
    last_at: float = float("-inf")
    networks: set[str] = dataclasses.field(default_factory=set)

    def add(self, request: Request) -> None:
        self.requests += 1
        status = request.status_code
        if status < 300:
            if status >= 200:
                self.status_2xx += 1
        elif status >= 500:
            self.status_5xx += 1
        elif status >= 400:
            self.status_4xx += 1
            if status in AUTH_FAILURES:
                self.auth_failures += 1
        else:
            self.status_3xx += 1
        self.tokens_in += request.tokens_in
        self.tokens_out += request.tokens_out
        latency = request.latency_ms
        self.latency_sum_ms += latency
        if latency > self.latency_max_ms:  # noqa: PLR1730 - cheaper than max(), per request
            self.latency_max_ms = latency
        at = request.at
        if at < self.first_at:  # noqa: PLR1730
            self.first_at = at
        if at > self.last_at:  # noqa: PLR1730
            self.last_at = at
        self.networks.add(request.network)  # capped when written


def roll_up(requests: Sequence[Request]) -> list[MinuteRollup]:
    """Per key and minute, in one pass: what one upsert statement writes."""
    rows: dict[tuple[str, int], MinuteRollup] = {}
    for request in requests:
        slot = (request.key_id, request.minute)
        row = rows.get(slot)
        if row is None:
            row = rows[slot] = MinuteRollup(request.key_id, request.account_id, request.minute)
        row.add(request)
    return list(rows.values())
