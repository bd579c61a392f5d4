"""Retention's SQL: where a chain may be cut, and the cut itself (as the tables' owner)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.audit.adapters.chain_reader import checkpoint_of
from services.audit.domain.records import Checkpoint, RetentionAnchor
from services.audit.domain.retention import Segment


class RetentionStore:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def boundary(
        self, account_id: str, after_seq: int, cutoff: datetime
    ) -> Checkpoint | None:
        """The newest checkpoint past `after_seq` whose record was recorded before `cutoff`
        (records are recorded in sequence order, so every record up to it was too)."""
        row = await self.conn.fetchrow(
            "SELECT c.account_id, c.seq, c.hash, c.signed_at, c.signature"
            " FROM audit_checkpoints c JOIN audit_records r"
            " ON r.account_id = c.account_id AND r.seq = c.seq"
            " WHERE c.account_id = $1 AND c.seq > $2 AND r.recorded_at < $3"
            " ORDER BY c.seq DESC LIMIT 1",
            account_id,
            after_seq,
            cutoff,
        )
        return checkpoint_of(row) if row is not None else None

    async def segment(self, account_id: str, after_seq: int, through_seq: int) -> Segment:
        row = await self.conn.fetchrow(
            "SELECT count(*) AS n, min(occurred_at) AS oldest, max(occurred_at) AS newest"
            " FROM audit_records WHERE account_id = $1 AND seq > $2 AND seq <= $3",
            account_id,
            after_seq,
            through_seq,
        )
        return Segment(account_id, after_seq, through_seq, row["n"], row["oldest"], row["newest"])

    async def remove(self, anchor: RetentionAnchor) -> int:
        """Save the anchor, then delete what it covers (leftovers of an earlier cut too)."""
        await self.conn.execute("SET LOCAL audit.retention = 'on'")  # see the append_only trigger
        await self.conn.execute(
            "INSERT INTO audit_retention_anchors (account_id, through_seq, through_hash,"
            " removed_count, cutoff, applied_at, signature) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            anchor.account_id,
            anchor.through_seq,
            anchor.through_hash,
            anchor.removed_count,
            anchor.cutoff,
            anchor.applied_at,
            anchor.signature,
        )
        status: str = await self.conn.execute(
            "DELETE FROM audit_records WHERE account_id = $1 AND seq <= $2",
            anchor.account_id,
            anchor.through_seq,
        )
        await self.conn.execute(
            "DELETE FROM audit_checkpoints WHERE account_id = $1 AND seq <= $2",
            anchor.account_id,
            anchor.through_seq,
        )
        return int(status.rsplit(maxsplit=1)[-1])
