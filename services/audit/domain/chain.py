"""The hash chain of an account's audit records.

Record N of a chain stores `prev_hash`, the hash of record N-1 (32 zero bytes for record 1,
or the hash of the last record retention removed), and `hash`, an HMAC-SHA-256 under the
audit key of its canonical content, `prev_hash` and its own position included. Editing,
removing, inserting or reordering records breaks a hash or a link, and without the key
nobody can compute the hashes that would hide it. Cutting the newest records off leaves a
valid but shorter chain; signed checkpoints of the chain head show that one.
"""

from __future__ import annotations

import dataclasses
import hmac
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import orjson

from contracts import format_utc
from services.audit.domain.entries import Entry
from services.audit.domain.records import AuditRecord, ChainHead, Checkpoint, RetentionAnchor

GENESIS: Final = bytes(32)
HASH_VERSION: Final = 1
MIN_KEY_BYTES: Final = 32


def _canonical(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(value: datetime) -> int:
    """Microseconds since the epoch: exact, and cheaper to write than an ISO string."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _content(
    account_id: str,
    seq: int,
    prev_hash: bytes,
    audit_id: UUID,
    entry: Entry | AuditRecord,
    key_name: str | None,
    recorded_at: datetime,
) -> bytes:
    """The bytes a record's hash covers: every field but the hash, as one JSON array in a
    fixed order (a format change is a new HASH_VERSION: old records must still verify)."""
    actor = entry.actor
    key_id = entry.key_id
    return orjson.dumps(
        [
            "audit-record",
            HASH_VERSION,
            account_id,
            seq,
            prev_hash.hex(),
            audit_id.hex,
            entry.source_id,
            _micros(entry.occurred_at),
            _micros(recorded_at),
            None if actor is None else [actor.type, actor.id, actor.ip, actor.user_agent],
            entry.action,
            None if key_id is None else key_id.hex,
            key_name,
            entry.outcome,
            entry.correlation_id,
            entry.causation_id,
            entry.details,
        ]
    )


def record_content(record: AuditRecord) -> bytes:
    return _content(
        record.account_id,
        record.seq,
        record.prev_hash,
        record.audit_id,
        record,
        record.key_name,
        record.recorded_at,
    )


class ChainKey:
    """The audit key: hashes records, signs checkpoints and retention anchors."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the audit key must be at least {MIN_KEY_BYTES} bytes")
        self._keyed = hmac.new(bytes(key), digestmod="sha256")
        """The HMAC with the key absorbed: each MAC starts from a copy of it."""

    def __repr__(self) -> str:
        return "ChainKey(<redacted>)"

    def _mac(self, content: bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(content)
        return mac.digest()

    def record_hash(self, record: AuditRecord) -> bytes:
        return self._mac(record_content(record))

    def seal(
        self,
        account_id: str,
        after_seq: int,
        after_hash: bytes,
        entry: Entry,
        key_name: str | None,
        audit_id: UUID,
        recorded_at: datetime,
    ) -> AuditRecord:
        """`entry` as the record after record `after_seq` (of hash `after_hash`)."""
        seq = after_seq + 1
        content = _content(account_id, seq, after_hash, audit_id, entry, key_name, recorded_at)
        return AuditRecord(
            account_id=account_id,
            seq=seq,
            audit_id=audit_id,
            source_id=entry.source_id,
            occurred_at=entry.occurred_at,
            recorded_at=recorded_at,
            actor=entry.actor,
            action=entry.action,
            key_id=entry.key_id,
            key_name=key_name,
            outcome=entry.outcome,
            correlation_id=entry.correlation_id,
            causation_id=entry.causation_id,
            details=entry.details,
            prev_hash=after_hash,
            hash=self._mac(content),
        )

    def checkpoint(self, head: ChainHead, signed_at: datetime) -> Checkpoint:
        return Checkpoint(
            head.account_id, head.seq, head.hash, signed_at, self._checkpoint_mac(head, signed_at)
        )

    def checkpoint_is_genuine(self, checkpoint: Checkpoint) -> bool:
        head = ChainHead(checkpoint.account_id, checkpoint.seq, checkpoint.hash)
        expected = self._checkpoint_mac(head, checkpoint.signed_at)
        return hmac.compare_digest(expected, checkpoint.signature)

    def _checkpoint_mac(self, head: ChainHead, signed_at: datetime) -> bytes:
        return self._mac(
            _canonical(
                {
                    "kind": "checkpoint",
                    "v": HASH_VERSION,
                    "account_id": head.account_id,
                    "seq": head.seq,
                    "hash": head.hash.hex(),
                    "signed_at": format_utc(signed_at),
                }
            )
        )

    def anchor(
        self,
        boundary: ChainHead,
        removed_count: int,
        cutoff: datetime,
        applied_at: datetime,
    ) -> RetentionAnchor:
        unsigned = RetentionAnchor(
            boundary.account_id, boundary.seq, boundary.hash, removed_count, cutoff, applied_at, b""
        )
        return dataclasses.replace(unsigned, signature=self._anchor_mac(unsigned))

    def anchor_is_genuine(self, anchor: RetentionAnchor) -> bool:
        return hmac.compare_digest(self._anchor_mac(anchor), anchor.signature)

    def _anchor_mac(self, anchor: RetentionAnchor) -> bytes:
        return self._mac(
            _canonical(
                {
                    "kind": "retention-anchor",
                    "v": HASH_VERSION,
                    "account_id": anchor.account_id,
                    "through_seq": anchor.through_seq,
                    "through_hash": anchor.through_hash.hex(),
                    "removed_count": anchor.removed_count,
                    "cutoff": format_utc(anchor.cutoff),
                    "applied_at": format_utc(anchor.applied_at),
                }
            )
        )
