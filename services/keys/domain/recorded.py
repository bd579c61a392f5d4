"""An event as the event store holds it: the contract envelope's fields, plus the lookup
hash of a new secret (KeyCreated, KeyRotated), which is stored but never published."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from contracts import EVENT_ADAPTER, Actor, Event
from contracts.base import ContractModel


@dataclass(frozen=True, slots=True)
class Change:
    """An event the aggregate decided on, before the store gives it id, version, position."""

    event_type: str
    data: ContractModel
    secret_hash: bytes | None = None


@dataclass(frozen=True, slots=True)
class Meta:
    """Who asks, and why: copied onto every event a request produces."""

    actor: Actor
    occurred_at: datetime
    correlation_id: str | None = None
    causation_id: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    event_id: UUID
    key_id: UUID
    account_id: str
    stream_version: int
    position: int | None
    """Assigned in commit order by the sequencer, shortly after the append commits."""
    event_type: str
    occurred_at: datetime
    actor: Actor
    correlation_id: str | None
    causation_id: str | None
    data: dict[str, Any]
    secret_hash: bytes | None = None

    def envelope(self, position: int | None = None) -> Event:
        """The contract form, as published on `keys.events` (no secret hash)."""
        return EVENT_ADAPTER.validate_python(
            {
                "event_id": self.event_id,
                "event_type": self.event_type,
                "schema_version": 1,
                "key_id": self.key_id,
                "account_id": self.account_id,
                "stream_version": self.stream_version,
                "position": position if position is not None else self.position,
                "occurred_at": self.occurred_at,
                "actor": self.actor,
                "correlation_id": self.correlation_id,
                "causation_id": self.causation_id,
                "data": self.data,
            }
        )
