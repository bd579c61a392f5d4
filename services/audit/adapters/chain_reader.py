"""Reading the chains back for verification, from one consistent snapshot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from services.audit.adapters.chain_store import RECORD_COLUMNS
from services.audit.domain.entries import ActorRef
from services.audit.domain.records import AuditRecord, ChainHead, Checkpoint, RetentionAnchor

BATCH: Final = 5000
"""Records read per round trip when a chain is verified."""
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
    """A record from a row of RECORD_COLUMNS (in that order; more columns may follow)."""
    (
        account_id, seq, audit_id, source_id, occurred_at, recorded_at,
        actor_type, actor_id, actor_ip, actor_user_agent,
        action, key_id, key_name, outcome, correlation_id, causation_id, details,
        prev_hash, hash_, *_,
    ) = row  # fmt: skip
    return AuditRecord(
        account_id, seq, audit_id, source_id, occurred_at, recorded_at,
        None if actor_type is None else ActorRef(actor_type, actor_id, actor_ip, actor_user_agent),
        action, key_id, key_name, outcome, correlation_id, causation_id, details, prev_hash, hash_,
    )  # fmt: skip


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
    ) -> AsyncIterator[list[tuple[AuditRecord, Checkpoint | None]]]:
        """The chain's records after `after_seq`, in order, each with its checkpoint: a
        part of BATCH at a time, read from a server-side cursor (memory stays flat however
        long the chain)."""
        cursor = await self.conn.cursor(_RECORDS, account_id, after_seq, through_seq)
        while rows := await cursor.fetch(BATCH):
            yield [
                (
                    record_of(row),
                    None
                    if row["cp_hash"] is None
                    else Checkpoint(
                        account_id,
                        row["seq"],
                        row["cp_hash"],
                        row["cp_signed_at"],
                        row["cp_signature"],
                    ),
                )
                for row in rows
            ]

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
