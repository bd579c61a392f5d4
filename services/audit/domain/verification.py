"""Recomputing a chain and naming the first record where it breaks.

The records are fed in sequence order, each with the checkpoint signed at its position if
there is one; `finish` then compares the end of the chain with the newest checkpoint and
with the chain head. A chain starts at record 1 after `GENESIS`, or right after the last
record retention removed, as its signed anchor says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from contracts import format_utc
from services.audit.domain.chain import GENESIS, ChainKey
from services.audit.domain.records import AuditRecord, ChainHead, Checkpoint, RetentionAnchor

ALTERED: Final = "altered"
UNLINKED: Final = "unlinked"
MISSING: Final = "missing"
TRUNCATED: Final = "truncated"
FORGED_CHECKPOINT: Final = "forged_checkpoint"
CHECKPOINT_MISMATCH: Final = "checkpoint_mismatch"
FORGED_ANCHOR: Final = "forged_anchor"
HEAD_MISMATCH: Final = "head_mismatch"


@dataclass(frozen=True, slots=True)
class Break:
    """The first place where the stored chain is not the chain that was written."""

    seq: int
    code: str
    message: str
    audit_id: UUID | None = None
    source_id: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    account_id: str
    records_checked: int
    first_seq: int | None
    last_seq: int
    last_hash: bytes
    checkpoint: Checkpoint | None
    anchor: RetentionAnchor | None
    broken: Break | None

    @property
    def ok(self) -> bool:
        return self.broken is None


class ChainVerifier:
    def __init__(self, key: ChainKey, account_id: str, anchor: RetentionAnchor | None) -> None:
        self._key = key
        self.account_id = account_id
        self.anchor = anchor
        self.next_seq = anchor.through_seq + 1 if anchor is not None else 1
        self.prev_hash = anchor.through_hash if anchor is not None else GENESIS
        self.checked = 0
        self.first_seq: int | None = None
        self.broken: Break | None = None
        if anchor is not None and not key.anchor_is_genuine(anchor):
            self.broken = Break(
                self.next_seq,
                FORGED_ANCHOR,
                f"the retention anchor before record {self.next_seq} is not signed with the"
                " audit key: the start of the chain cannot be trusted",
            )

    def check(self, record: AuditRecord, checkpoint: Checkpoint | None = None) -> bool:
        """Check the next record; False once the chain is broken (the rest need not come)."""
        if self.broken is not None:
            return False
        self.broken = self._problem(record, checkpoint)
        if self.broken is not None:
            return False
        self.first_seq = self.first_seq or record.seq
        self.checked += 1
        self.next_seq = record.seq + 1
        self.prev_hash = record.hash
        return True

    def check_all(self, records: Iterable[tuple[AuditRecord, Checkpoint | None]]) -> bool:
        """`check` each next record (with its checkpoint) in turn; False once the chain is
        broken."""
        check = self.check
        return all(check(record, checkpoint) for record, checkpoint in records)

    def _problem(self, record: AuditRecord, checkpoint: Checkpoint | None) -> Break | None:
        seq = record.seq

        def at_record(code: str, message: str) -> Break:
            return Break(seq, code, message, record.audit_id, record.source_id)

        if seq != self.next_seq:
            gap = f"{self.next_seq}..{seq - 1}" if seq > self.next_seq + 1 else str(self.next_seq)
            return Break(
                self.next_seq,
                MISSING,
                f"record {gap} is missing: the chain goes from {self.next_seq - 1} to {seq}",
            )
        if self._key.record_hash(record) != record.hash:
            return at_record(ALTERED, f"record {seq} does not match its hash: it was changed")
        if record.prev_hash != self.prev_hash:
            return at_record(
                UNLINKED,
                f"record {seq} does not follow record {seq - 1}: a record was inserted,"
                " removed or moved before it",
            )
        if checkpoint is not None and not self._key.checkpoint_is_genuine(checkpoint):
            return Break(seq, FORGED_CHECKPOINT, f"the checkpoint at record {seq} is forged")
        if checkpoint is not None and checkpoint.hash != record.hash:
            return at_record(
                CHECKPOINT_MISMATCH,
                f"record {seq} is not the record checkpointed at"
                f" {format_utc(checkpoint.signed_at)}",
            )
        return None

    def finish(self, newest_checkpoint: Checkpoint | None, head: ChainHead | None) -> Verdict:
        """The verdict, once every record was fed (or the chain broke)."""
        if self.broken is None:
            self.broken = self._end_problem(newest_checkpoint, head)
        return self.verdict(newest_checkpoint)

    def verdict(self, checkpoint: Checkpoint | None = None) -> Verdict:
        """What was found so far, without looking at the end of the chain (for a part)."""
        return Verdict(
            account_id=self.account_id,
            records_checked=self.checked,
            first_seq=self.first_seq,
            last_seq=self.next_seq - 1,
            last_hash=self.prev_hash,
            checkpoint=checkpoint,
            anchor=self.anchor,
            broken=self.broken,
        )

    def _end_problem(self, newest: Checkpoint | None, head: ChainHead | None) -> Break | None:
        last = self.next_seq - 1
        if newest is not None and newest.seq > last:
            if not self._key.checkpoint_is_genuine(newest):
                return Break(
                    newest.seq, FORGED_CHECKPOINT, f"the checkpoint at {newest.seq} is forged"
                )
            return Break(
                last + 1,
                TRUNCATED,
                f"the chain ends at record {last}, but a checkpoint signed at"
                f" {format_utc(newest.signed_at)} saw it reach record {newest.seq}:"
                f" records {last + 1}..{newest.seq} were removed",
            )
        head_seq, head_hash = (head.seq, head.hash) if head is not None else (0, GENESIS)
        if (head_seq, head_hash) != (last, self.prev_hash) and (head is not None or last > 0):
            return Break(
                min(head_seq, last) + 1,
                HEAD_MISMATCH,
                f"the chain ends at record {last}, but its head says {head_seq}: records were"
                " removed or added at the end",
            )
        return None
