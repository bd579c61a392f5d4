"""Key events as the keys service writes them, for the audit benchmark: many keys, each
living a plausible life (created, re-scoped, disabled, enabled, rotated, revealed, renamed,
revoked), interleaved across keys, encoded before the clock starts."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from contracts import (
    Actor,
    Event,
    KeyCreated,
    KeyCreatedData,
    KeyDisabled,
    KeyDisabledData,
    KeyEnabled,
    KeyEnabledData,
    KeyRevealed,
    KeyRevealedData,
    KeyRevoked,
    KeyRevokedData,
    KeyRotated,
    KeyRotatedData,
    KeyUpdated,
    KeyUpdatedData,
    event_headers,
)
from servicekit.kafka import Headers

PER_KEY: Final = 10
PEOPLE: Final = [
    Actor(type="user", id=str(uuid.uuid4()), ip=f"203.0.113.{i}", user_agent="Mozilla/5.0 (bench)")
    for i in range(1, 21)
]
BILLING: Final = Actor(type="service", id="billing")

Life = list[tuple[type[Event], Callable[[int], Any]]]


def _life() -> Life:
    """The PER_KEY events of key number k, in order."""
    return [
        (KeyCreated, lambda k: KeyCreatedData(name=f"key {k}", scopes=["keys:verify"],
                                              prefix="ig_live_Ab3d")),
        (KeyUpdated, lambda k: KeyUpdatedData(before={"scopes": ["keys:verify"]},
                                              after={"scopes": ["keys:verify", "usage:read"]})),
        (KeyDisabled, lambda k: KeyDisabledData(reason="invoice unpaid")),
        (KeyEnabled, lambda k: KeyEnabledData(reason="paid")),
        (KeyRotated, lambda k: KeyRotatedData(prefix="ig_live_Zx9q",
                                              previous_prefix="ig_live_Ab3d")),
        (KeyRevealed, lambda k: KeyRevealedData()),
        (KeyUpdated, lambda k: KeyUpdatedData(before={"name": f"key {k}"},
                                              after={"name": f"key {k} (prod)"})),
        (KeyUpdated, lambda k: KeyUpdatedData(before={"description": None},
                                              after={"description": "used by the web app"})),
        (KeyDisabled, lambda k: KeyDisabledData(reason="suspicious traffic")),
        (KeyRevoked, lambda k: KeyRevokedData(reason="leaked in a public repository")),
    ]  # fmt: skip


def event_stream(account_id: str, count: int) -> list[tuple[bytes, bytes, Headers]]:
    """`count` events (a multiple of PER_KEY is best) as (key, value, headers)."""
    life = _life()
    keys = max(1, count // PER_KEY)
    key_ids = [uuid.uuid4() for _ in range(keys)]
    start = datetime.now(UTC) - timedelta(hours=1)
    messages: list[tuple[bytes, bytes, Headers]] = []
    for version, (event_type, data) in enumerate(life, start=1):
        for k, key_id in enumerate(key_ids):
            if len(messages) == count:
                return messages
            n = len(messages)
            actor = BILLING if event_type in (KeyDisabled, KeyEnabled) else PEOPLE[k % len(PEOPLE)]
            event = event_type(
                event_id=uuid.uuid4(),
                key_id=key_id,
                account_id=account_id,
                stream_version=version,
                position=10**15 + n,
                occurred_at=start + timedelta(microseconds=20 * n),
                actor=actor,
                correlation_id=f"bench-{n}",
                causation_id=str(uuid.uuid4()),
                data=data(k),
            )
            messages.append((str(key_id).encode(), event.model_dump_json().encode(),
                             event_headers(event)))  # fmt: skip
    return messages
