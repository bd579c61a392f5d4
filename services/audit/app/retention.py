"""Applying retention to a chain, as the owner of the tables (the service cannot delete).

The segment to remove is verified first: retention never destroys the evidence of a
tampered chain. Removal, anchor and `retention.applied` record commit together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.audit.adapters.chain_reader import ChainReader
from services.audit.adapters.chain_store import ChainTransaction
from services.audit.adapters.retention_store import RetentionStore
from services.audit.app.recording import Clock, append, utc_now
from services.audit.app.verification import verify_chain
from services.audit.domain.chain import ChainKey
from services.audit.domain.records import ChainHead
from services.audit.domain.retention import Segment, retention_entry
from services.audit.domain.verification import Verdict


class RetentionRefused(Exception):
    """The segment to remove does not verify: it is kept, as evidence."""

    def __init__(self, verdict: Verdict) -> None:
        broken = verdict.broken
        super().__init__(broken.message if broken else "the segment does not verify")
        self.verdict = verdict


@dataclass(frozen=True, slots=True)
class RetentionOutcome:
    segment: Segment
    removed: int
    applied: bool


async def apply_retention(
    conn: Any,
    key: ChainKey,
    account_id: str,
    cutoff: datetime,
    *,
    dry_run: bool = False,
    clock: Clock = utc_now,
) -> RetentionOutcome | None:
    """Remove the chain's records recorded before `cutoff`, up to its newest checkpoint
    among them; None when there is nothing to remove."""
    store = RetentionStore(conn)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        reader = ChainReader(conn)
        anchor = await reader.anchor(account_id)
        after = anchor.through_seq if anchor is not None else 0
        boundary = await store.boundary(account_id, after, cutoff)
        if boundary is None:
            return None
        verdict = await verify_chain(reader, key, account_id, through_seq=boundary.seq)
        if not verdict.ok or verdict.last_seq != boundary.seq:
            raise RetentionRefused(verdict)
        segment = await store.segment(account_id, after, boundary.seq)
    if dry_run:
        return RetentionOutcome(segment, 0, applied=False)
    async with conn.transaction():
        cut = ChainHead(account_id, boundary.seq, boundary.hash)
        new_anchor = key.anchor(cut, segment.count, cutoff, clock())
        removed = await store.remove(new_anchor)
        await append(ChainTransaction(conn), key, [retention_entry(new_anchor, segment)], clock)
    return RetentionOutcome(segment, removed, applied=True)
