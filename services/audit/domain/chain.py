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
import hashlib
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
    recorded_micros: int,
) -> bytes:
    """The bytes a record's hash covers: every field but the hash, as one JSON array in a
    fixed order (a format change is a new HASH_VERSION: old records must still verify).
    `recorded_micros` is the record's `recorded_at` as `_micros` gives it."""
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
            recorded_micros,
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
        _micros(record.recorded_at),
    )


_new_record: Final = tuple.__new__
"""Makes an `AuditRecord` of its fields in order without the named tuple's `__new__` (a
Python call with sixteen arguments): one per record sealed, by the thousand a batch."""

_BLOCK: Final = 64
"""SHA-256's block size: the HMAC key is padded (or first hashed) to it (RFC 2104)."""


class ChainKey:
    """The audit key: hashes records, signs checkpoints and retention anchors."""

    __slots__ = ("_inner", "_outer", "_recorded")

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the audit key must be at least {MIN_KEY_BYTES} bytes")
        block = bytes(key) if len(key) <= _BLOCK else hashlib.sha256(key).digest()
        block = block.ljust(_BLOCK, b"\0")
        # HMAC-SHA-256 as RFC 2104 defines it, with both keyed states made once: each MAC
        # starts from copies of them (two C calls instead of the hmac module's Python
        # wrapper; tests/unit/test_audit_chain.py checks it against hmac).
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self._recorded: tuple[datetime, int] = (_EPOCH, 0)
        """The last `recorded_at` sealed or checked, with its `_micros`: a batch shares one."""

    def __repr__(self) -> str:
        return "ChainKey(<redacted>)"

    def _mac(self, content: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(content)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def _recorded_micros(self, recorded_at: datetime) -> int:
        known, micros = self._recorded
        if recorded_at != known:
            micros = _micros(recorded_at)
            self._recorded = (recorded_at, micros)
        return micros

    def record_hash(self, record: AuditRecord) -> bytes:
        return self._mac(
            _content(
                record.account_id, record.seq, record.prev_hash, record.audit_id, record,
                record.key_name, self._recorded_micros(record.recorded_at),
            )
        )  # fmt: skip

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
        recorded = self._recorded_micros(recorded_at)
        content = _content(account_id, seq, after_hash, audit_id, entry, key_name, recorded)
        return _new_record(AuditRecord, (
            account_id, seq, audit_id, entry.source_id, entry.occurred_at, recorded_at,
            entry.actor, entry.action, entry.key_id, key_name, entry.outcome,
            entry.correlation_id, entry.causation_id, entry.details, after_hash,
            self._mac(content),
        ))  # fmt: skip

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
