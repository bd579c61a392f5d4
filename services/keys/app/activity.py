"""What verification leaves behind: refusals of known keys on `usage.records` (so a leaked
key that was disabled can be seen being tried: 401; a key used from outside its networks:
403; a key over its limits: 429), and when each key was last used.

A key's last use (docs/last-used.md) is the newest request made with it that was not
refused for the key itself: learned from `usage.records` (`latest_uses`, the authority:
gateways publish every request there), and from the key service's own acceptance of a
key calling the platform's API (`LastUsedTracker`). /v1/verify does not mark the key it
verifies as used: the gateway's usage record of the request does."""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Final, NamedTuple

from contracts import UsageRecord
from contracts.usage import REFUSED_STATUSES
from servicekit.logging import get_logger
from servicekit.runtime import Topic
from services.keys.app.verification import KnownSecret

log = get_logger(__name__)
PREVIOUS: Final = "previous"
"""A usage record's `secret` for a rotated-out secret (contracts.usage.SecretMatched)."""
UNKNOWN_SOURCE_IP = "0.0.0.0"  # noqa: S104 - a placeholder address in a record, not a bind
Attempt = tuple[
    uuid.UUID,
    str,
    float,
    str | None,
    str | None,
    str | None,
    int,
    str | None,
    uuid.UUID | None,
    bool,
]
"""A decision as noted: key id, account, epoch time, address, user agent, endpoint, status,
model, record id (None: a new one), whether the secret was a rotated-out one."""


class RefusalReporter:
    """Buffers the usage records of verification's decisions (refusals of known keys, and
    forward auth's admissions) and sends them in batches; a full buffer drops the oldest.

    `report` only notes the attempt (a tuple append): the record is built when flushed, so
    a refusal (a canary's above all) costs the answer no more than an unknown key does."""

    def __init__(self, topic: Topic, max_buffer: int = 50_000) -> None:
        self._topic = topic
        self._attempts: deque[Attempt] = deque(maxlen=max_buffer)
        self._buffer: deque[UsageRecord] = deque(maxlen=max_buffer)
        self.dropped = 0

    def report(
        self,
        known: KnownSecret,
        source_ip: str | None,
        user_agent: str | None,
        endpoint: str | None,
        status_code: int = 401,
        model: str | None = None,
        record_id: uuid.UUID | None = None,
    ) -> None:
        if len(self._attempts) == self._attempts.maxlen:
            self.dropped += 1
        self._attempts.append(
            (
                known.key_id,
                known.account_id,
                time.time(),
                source_ip,
                user_agent,
                endpoint,
                status_code,
                model,
                record_id,
                known.previous,
            )
        )

    def _records(self) -> None:
        while self._attempts:
            key_id, account_id, at, source_ip, agent, endpoint, status, model, record_id, old = (
                self._attempts.popleft()
            )
            self._buffer.append(
                UsageRecord(
                    record_id=record_id or uuid.uuid4(),
                    key_id=key_id,
                    account_id=account_id,
                    occurred_at=datetime.fromtimestamp(at, UTC),
                    source_ip=_address_or_unknown(source_ip),
                    user_agent=_storable(agent, 500),
                    endpoint=_storable(endpoint, 200) or "/v1/verify",
                    model=_storable(model, 100),
                    status_code=status,
                    tokens_in=0,
                    tokens_out=0,
                    latency_ms=0.0,
                    secret=PREVIOUS if old else None,
                )
            )

    async def flush(self) -> None:
        self._records()
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(len(self._buffer), 1000))]
            try:
                await self._topic.send_many(
                    [(str(r.key_id).encode(), r.model_dump_json().encode(), ()) for r in batch]
                )
            except Exception:
                self._buffer.extendleft(reversed(batch))  # keep them for the next flush
                raise


def _storable(text: str | None, length: int) -> str | None:
    """What a client sent, as a record keeps it: no NUL (contracts.base.Text), cut short."""
    kept = (text or "").replace("\x00", "")[:length]
    return kept or None


def _address_or_unknown(text: str | None) -> str:
    try:
        return str(ipaddress.ip_address(text or ""))
    except ValueError:
        return UNKNOWN_SOURCE_IP


class Use(NamedTuple):
    """What a usage record says about its key's last use, and no more."""

    key_id: str
    """Canonical uuid text."""
    account_id: str
    at: datetime
    status_code: int
    secret: str | None = None
    """previous: the request presented the secret a rotation replaced (contracts.usage)."""


LastUses = Mapping[tuple[str, str], datetime]
"""The latest use per (key id, account id claimed for it)."""
SaveLastUses = Callable[[LastUses], Awaitable[None]]


def latest_uses(
    uses: Iterable[Use], previous_secret: bool = False
) -> dict[tuple[str, str], datetime]:
    """A batch of records folded into the latest use per key; refusals do not count.
    `previous_secret`: only the uses of a rotated-out secret (in its grace period)."""
    latest: dict[tuple[str, str], datetime] = {}
    for key_id, account_id, at, status, matched in uses:
        if status in REFUSED_STATUSES or (previous_secret and matched != PREVIOUS):
            continue
        seen = latest.get((key_id, account_id))
        if seen is None or at > seen:
            latest[key_id, account_id] = at
    return latest


class LastUsedTracker:
    """Remembers the latest accepted caller of the platform's own API per key (console,
    management API, whoami, a gateway's own key); flushed in one statement."""

    def __init__(self, save: SaveLastUses) -> None:
        self._save = save
        self._seen: dict[tuple[str, str], datetime] = {}

    def touch(self, key_id: uuid.UUID, account_id: str) -> None:
        self._seen[str(key_id), account_id] = datetime.now(UTC)

    async def flush(self) -> None:
        seen, self._seen = self._seen, {}
        try:
            await self._save(seen)
        except Exception:
            for key, at in seen.items():
                self._seen[key] = max(at, self._seen.get(key, at))
            raise
