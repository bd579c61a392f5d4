"""Checkpoints: which chain heads moved since they were last signed, and the signatures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from services.audit.domain.records import ChainHead, Checkpoint


class CheckpointStore:
    def __init__(self, pool: Callable[[], Any]) -> None:
        self._pool = pool

    async def unsigned_heads(self) -> list[ChainHead]:
        """Heads past their chain's newest checkpoint (committed heads only: no lock)."""
        rows = await self._pool().fetch(
            "SELECT h.account_id, h.seq, h.hash FROM audit_chain_heads h"
            " WHERE h.seq > COALESCE((SELECT c.seq FROM audit_checkpoints c"
            "  WHERE c.account_id = h.account_id ORDER BY c.seq DESC LIMIT 1), 0)"
            " ORDER BY h.account_id"
        )
        return [ChainHead(r["account_id"], r["seq"], r["hash"]) for r in rows]

    async def save(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Two processes may sign the same head: the first signature stands."""
        if not checkpoints:
            return
        await self._pool().execute(
            "INSERT INTO audit_checkpoints (account_id, seq, hash, signed_at, signature)"
            " SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[],"
            " $4::timestamptz[], $5::bytea[]) ON CONFLICT DO NOTHING",
            [c.account_id for c in checkpoints],
            [c.seq for c in checkpoints],
            [c.hash for c in checkpoints],
            [c.signed_at for c in checkpoints],
            [c.signature for c in checkpoints],
        )
