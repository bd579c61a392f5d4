"""Reading the chains back for verification, from one consistent snapshot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from services.audit.adapters.chain_store import RECORD_COLUMNS
from services.audit.domain.entries import ActorRef
from services.audit.domain.records import AuditRecord, ChainHead, Checkpoint, RetentionAnchor

PREFETCH: Final = 1000
_RECORDS: Final = (
    f"SELECT {', '.join(f'r.{c}' for c in RECORD_COLUMNS)},"
    " c.hash AS cp_hash, c.signed_at AS cp_signed_at, c.signature AS cp_signature"
    " FROM audit_records r LEFT JOIN audit_checkpoints c"
    " ON c.account_id = r.account_id AND c.seq = r.seq"
    " WHERE r.account_id = $1 AND r.seq > $2 AND r.seq <= $3 ORDER BY r.seq"
)
_ANCHOR_COLUMNS: Final = (
    "account_id, through_seq, through_hash, removed_count, cutoff, applied_at, signature"
)


def record_of(row: Any) -> AuditRecord:
    actor = (
        ActorRef(row["actor_type"], row["actor_id"], row["actor_ip"], row["actor_user_agent"])
        if row["actor_type"] is not None
        else None
    )
    return AuditRecord(
        account_id=row["account_id"],
        seq=row["seq"],
        audit_id=row["audit_id"],
        source_id=row["source_id"],
        occurred_at=row["occurred_at"],
        recorded_at=row["recorded_at"],
        actor=actor,
        action=row["action"],
        key_id=row["key_id"],
        key_name=row["key_name"],
        outcome=row["outcome"],
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        details=row["details"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def checkpoint_of(row: Any) -> Checkpoint:
    return Checkpoint(
        row["account_id"], row["seq"], row["hash"], row["signed_at"], row["signature"]
    )


class ChainReader:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def chains(self) -> list[str]:
        """Every chain with a head, a checkpoint, an anchor or a record."""
        rows = await self.conn.fetch(
            "SELECT account_id FROM audit_chain_heads"
            " UNION SELECT account_id FROM audit_checkpoints"
            " UNION SELECT account_id FROM audit_retention_anchors"
            " UNION SELECT DISTINCT account_id FROM audit_records ORDER BY 1"
        )
        return [r["account_id"] for r in rows]

    async def anchor(self, account_id: str) -> RetentionAnchor | None:
        row = await self.conn.fetchrow(
            f"SELECT {_ANCHOR_COLUMNS} FROM audit_retention_anchors WHERE account_id = $1"
            " ORDER BY through_seq DESC LIMIT 1",
            account_id,
        )
        return RetentionAnchor(*row.values()) if row is not None else None

    async def records(
        self, account_id: str, after_seq: int, through_seq: int = 2**63 - 1
    ) -> AsyncIterator[tuple[AuditRecord, Checkpoint | None]]:
        """The chain's records after `after_seq`, in order, each with its checkpoint."""
        cursor = self.conn.cursor(_RECORDS, account_id, after_seq, through_seq, prefetch=PREFETCH)
        async for row in cursor:
            checkpoint = (
                Checkpoint(
                    account_id, row["seq"], row["cp_hash"], row["cp_signed_at"], row["cp_signature"]
                )
                if row["cp_hash"] is not None
                else None
            )
            yield record_of(row), checkpoint

    async def newest_checkpoint(self, account_id: str) -> Checkpoint | None:
        row = await self.conn.fetchrow(
            "SELECT account_id, seq, hash, signed_at, signature FROM audit_checkpoints"
            " WHERE account_id = $1 ORDER BY seq DESC LIMIT 1",
            account_id,
        )
        return checkpoint_of(row) if row is not None else None

    async def head(self, account_id: str) -> ChainHead | None:
        row = await self.conn.fetchrow(
            "SELECT account_id, seq, hash FROM audit_chain_heads WHERE account_id = $1",
            account_id,
        )
        return ChainHead(row["account_id"], row["seq"], row["hash"]) if row is not None else None


@asynccontextmanager
async def snapshot(pool: Any) -> AsyncIterator[ChainReader]:
    """A reader that sees the chains as they were when it started, however long it reads."""
    async with (
        pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        yield ChainReader(conn)
