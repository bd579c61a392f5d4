"""Recording a batch of entries: once each, in order, chained, in one transaction.

The consumer commits a batch's offsets only after `record` returns, so a crash at any
point either stored the whole batch or nothing of it; the redelivered messages are then
recognised by their source id and not recorded twice.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import asyncpg
from prometheus_client import Counter

from services.audit.adapters.chain_store import (
    SOURCE_UNIQUE,
    ChainStore,
    ChainTransaction,
    random_ids,
)
from services.audit.domain.appending import Appended, append_entries
from services.audit.domain.chain import ChainKey
from services.audit.domain.entries import KEY_EVENT_ACTIONS, Entry

RECORDS_APPENDED = Counter(
    "instagen_audit_records_appended_total", "Audit records appended to a chain", ["action"]
)
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


async def append(
    tx: ChainTransaction,
    key: ChainKey,
    entries: Sequence[Entry],
    clock: Clock = utc_now,
    *,
    skip_recorded: bool = True,
) -> Appended:
    """Append the entries (but those recorded already, unless `skip_recorded` is False:
    then a recorded one fails the insert) with the heads of their chains locked."""
    heads = await tx.lock_heads(e.account_id for e in entries)
    recorded = await tx.recorded([e.source_id for e in entries]) if skip_recorded else set()
    unnamed = {
        e.key_id
        for e in entries
        if e.key_id is not None and e.key_name is None and e.action in KEY_EVENT_ACTIONS
    }
    names = await tx.key_names(unnamed) if unnamed else {}
    appended = append_entries(
        key, heads, entries, recorded, names, clock(), random_ids(len(entries))
    )
    await tx.append(appended.records)
    await tx.move_heads(appended.heads.values())
    await tx.remember_names(appended.names)
    return appended


def count_appended(appended: Appended) -> None:
    for action, count in Tally(r.action for r in appended.records).items():
        RECORDS_APPENDED.labels(action).inc(count)


class Recorder:
    def __init__(self, store: ChainStore, key: ChainKey, clock: Clock = utc_now) -> None:
        self.store = store
        self.key = key
        self.clock = clock

    async def record(self, entries: Sequence[Entry], *, redelivered: bool = False) -> int:
        """Store the entries; returns how many were new.

        Optimistic: a batch is first written as if none of it were recorded, which is the
        rule (a message comes again only after a crash or a rebalance); the unique source
        id refuses a batch that holds one, and the batch is written again without those
        (at once, when the caller knows it is `redelivered`).
        """
        if not entries:
            return 0
        try:
            appended = await self._append(entries, skip_recorded=redelivered)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != SOURCE_UNIQUE or redelivered:
                raise
            appended = await self._append(entries, skip_recorded=True)
        count_appended(appended)
        return len(appended.records)

    async def _append(self, entries: Sequence[Entry], *, skip_recorded: bool) -> Appended:
        async with self.store.transaction() as tx:
            return await append(tx, self.key, entries, self.clock, skip_recorded=skip_recorded)
