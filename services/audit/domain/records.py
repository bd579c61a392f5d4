"""What a chain is made of: records, its head, checkpoints of the head, retention anchors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

from services.audit.domain.entries import ActorRef


@dataclass(frozen=True, slots=True)
class ChainHead:
    account_id: str
    seq: int
    hash: bytes


class AuditRecord(NamedTuple):
    """A sealed record. A named tuple, not a frozen dataclass: one is made per record
    written or verified, and a frozen dataclass of 16 fields costs five times as much to
    make (each field set through object.__setattr__)."""

    account_id: str
    seq: int
    audit_id: UUID
    source_id: str
    occurred_at: datetime
    recorded_at: datetime
    actor: ActorRef | None
    action: str
    key_id: UUID | None
    key_name: str | None
    outcome: str
    correlation_id: str | None
    causation_id: str | None
    details: str
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    account_id: str
    seq: int
    hash: bytes
    signed_at: datetime
    signature: bytes


@dataclass(frozen=True, slots=True)
class RetentionAnchor:
    """Where retention cut a chain: records up to `through_seq` are gone on purpose."""

    account_id: str
    through_seq: int
    through_hash: bytes
    removed_count: int
    cutoff: datetime
    applied_at: datetime
    signature: bytes
