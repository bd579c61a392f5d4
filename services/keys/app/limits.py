"""A key's limits as verification checks them: parsed once per cached lookup, checked in
memory on every request (docs/limits.md).

Times here are seconds since 1970 (floats): the verify path compares and divides them, and
turns one into text only for the answer, once per window end (`reset_text`).
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, NamedTuple

from contracts import TokenBudget
from contracts.limits import LimitName, networks_of, window_bounds

RATE_SPANS: Final[dict[LimitName, int]] = {
    "rate_limit_per_minute": 60,
    "rate_limit_per_hour": 3600,
    "rate_limit_per_day": 86400,
}
Refusal = Literal["rate_limited", "budget_exhausted"]


class Limit(NamedTuple):
    """One limit of a key: its name, what its window allows, how long the window is (0 for
    a calendar month, whose length varies), and whether it counts requests (not tokens).
    Named tuples here and below: the verify path makes several per request."""

    name: LimitName
    allowed: int
    span: int
    counts_requests: bool

    def window_end(self, now: float) -> float:
        """The end of the fixed UTC window that holds `now` (contracts.limits.window_bounds)."""
        if self.span:
            return (now // self.span + 1) * self.span
        return _month_end(int(now // 86400))


@functools.lru_cache(maxsize=4)
def _month_end(day: int) -> float:
    at = datetime.fromtimestamp(day * 86400, UTC)
    return window_bounds("token_budget", "month", at)[1].timestamp()


@functools.lru_cache(maxsize=256)
def reset_text(end: float) -> str:
    """A window end as the answers write times (``...Z``); a few ends are live at a time."""
    return datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def retry_after(end: float, now: float) -> int:
    """Whole seconds until `end`, at least 1: when to ask again."""
    return max(1, math.ceil(end - now))


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """What a key allows: its limits (requests, then the token budget) and its networks."""

    limits: tuple[Limit, ...] = ()
    networks: tuple[tuple[int, int, int], ...] = ()
    """(IP version, network address, netmask) as integers: a check is a mask and compare."""
    cidrs: tuple[str, ...] = ()
    """The same networks as text, for the answer (a gateway that caches checks them)."""

    @classmethod
    def of(
        cls,
        minute: int | None,
        hour: int | None,
        day: int | None,
        budget: TokenBudget | None,
        cidrs: list[str] | tuple[str, ...],
    ) -> KeyLimits:
        rates = zip(RATE_SPANS.items(), (minute, hour, day), strict=True)
        limits = [Limit(name, allowed, span, True) for (name, span), allowed in rates if allowed]
        if budget is not None:
            span = 86400 if budget.period == "day" else 0
            limits.append(Limit("token_budget", budget.tokens, span, False))
        networks = tuple(
            (n.version, int(n.network_address), int(n.netmask)) for n in networks_of(cidrs)
        )
        return cls(tuple(limits), networks, tuple(cidrs))

    def network_allows(self, source_ip: str | None) -> bool:
        """Anywhere without networks; with networks, only an address inside one of them:
        no address, or text that is not one, is refused (fail closed)."""
        if not self.networks:
            return True
        address = _address(source_ip) if source_ip else None
        if address is None:
            return False
        version, number = address
        return any(v == version and number & mask == net for v, net, mask in self.networks)


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> tuple[int, int] | None:
    """(version, integer) of an address, an IPv4-mapped IPv6 one as its IPv4 address
    (as contracts.limits.address_in); None for text that is none. Clients repeat."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.version, int(address)


NO_LIMITS: Final = KeyLimits()


Remaining = tuple[LimitName, int, int, float]
"""What one limit has left in its current window, as the answer shows it: (name, what the
window allows, what remains of it, when it ends). A plain tuple: one per limit per request."""


class Admission(NamedTuple):
    """The limits' verdict on one request: admitted (`refused` is None) with what each
    limit has left, or refused by the limit that keeps the key refused longest."""

    refused: Refusal | None
    limit_name: LimitName | None
    reset_at: float
    windows: Sequence[Remaining]
