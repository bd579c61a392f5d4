"""Retention: whole chain segments go, up to a checkpoint, and the chain says so.

The boundary is a checkpoint, so what is removed is a stretch of chain that was signed
whole; the signed anchor keeps the hash of its last record, which the first remaining
record points to; and a `retention.applied` record at the head tells every reader of the
log what went and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import orjson

from contracts import format_utc
from services.audit.domain.entries import RETENTION_APPLIED, SUCCESS, ActorRef, Entry
from services.audit.domain.records import RetentionAnchor

RETENTION_ACTOR: Final = ActorRef(type="system", id="audit-retention")


@dataclass(frozen=True, slots=True)
class Segment:
    """The records a retention run removes: (after_seq, through_seq] of one chain."""

    account_id: str
    after_seq: int
    through_seq: int
    count: int
    oldest_occurred_at: datetime | None
    newest_occurred_at: datetime | None


def retention_entry(anchor: RetentionAnchor, segment: Segment) -> Entry:
    def when(value: datetime | None) -> str | None:
        return format_utc(value) if value is not None else None

    details = {
        "removed_from_seq": segment.after_seq + 1,
        "removed_through_seq": segment.through_seq,
        "removed_records": segment.count,
        "oldest_occurred_at": when(segment.oldest_occurred_at),
        "newest_occurred_at": when(segment.newest_occurred_at),
        "cutoff": format_utc(anchor.cutoff),
        "last_removed_hash": anchor.through_hash.hex(),
    }
    return Entry(
        source_id=f"retention:{anchor.account_id}:{anchor.through_seq}",
        account_id=anchor.account_id,
        occurred_at=anchor.applied_at,
        actor=RETENTION_ACTOR,
        action=RETENTION_APPLIED,
        key_id=None,
        outcome=SUCCESS,
        correlation_id=None,
        causation_id=None,
        details=orjson.dumps(details).decode(),
    )
