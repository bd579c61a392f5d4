"""Ingest a batch of usage records: count each once, advance each key's detectors,
store rollups, state and alerts in one transaction.

Order of work, all inside the transaction:
1. claim the record ids (`seen_records`): what was claimed before is not counted again,
   so a batch redelivered after a crash, or a record sent twice, changes nothing;
2. load the detector state of keys not in the cache;
3. advance each key request by request, in partition order (`KeyActivity.observe`);
4. upsert the per-minute rollups (aggregated here first), save the touched keys' state,
   store new alerts and containment commands.
The cache is trusted again only after the commit; a failure drops the touched keys.

The CPU work overlaps the server's: the rollups are computed while the claim runs (on the
guess that every record is new, the usual case; recomputed when not), and the detectors
advance while the rollups are written (`_meanwhile`). Nothing else uses the connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from services.usage.adapters import activity_store, usage_store
from services.usage.app.alerting import record_findings
from services.usage.app.context import UsageContext
from services.usage.app.metrics import CACHED_KEYS, RECORDS_COUNTED, RECORDS_DUPLICATE
from services.usage.domain.activity import KeyActivity
from services.usage.domain.detectors import Finding
from services.usage.domain.requests import Request, roll_up

T = TypeVar("T")
U = TypeVar("U")


async def _meanwhile(statement: Awaitable[T], work: Callable[[], U]) -> tuple[T, U]:
    """Send `statement`, do `work` (CPU, no await) while the server runs it, then await
    it. If the work fails, the statement is still awaited (the connection is free again
    for the rollback) before the failure propagates."""
    task = asyncio.ensure_future(statement)
    await asyncio.sleep(0)  # the task sends the statement and waits for the answer
    try:
        done = work()
    except BaseException:
        await asyncio.gather(task, return_exceptions=True)
        raise
    return await task, done


class Ingestor:
    def __init__(self, ctx: UsageContext) -> None:
        self.ctx = ctx
        self.max_minute = 0
        """Newest event-time minute seen: the dedup horizon is counted back from it."""

    async def ingest(self, requests: Sequence[Request]) -> int:
        """Returns how many requests were new (the others were duplicates)."""
        record_ids = [r.record_id for r in requests]
        unique: Sequence[Request] = requests
        if len(set(record_ids)) < len(record_ids):  # a record twice in the batch: rare
            seen: set[str] = set()
            unique = []
            for r in requests:  # the first occurrence in the batch wins
                if r.record_id not in seen:
                    seen.add(r.record_id)
                    unique.append(r)
            record_ids = [r.record_id for r in unique]
        ctx = self.ctx
        touched: set[str] = set()
        try:
            async with ctx.lock, ctx.pool().acquire() as conn, conn.transaction():
                await ctx.directory.ensure_loaded(conn)
                # A clock far ahead on one gateway must not push the horizon past the others.
                batch_minute = min(max(r.minute for r in unique), int(time.time() // 60) + 5)
                claimed, rollups = await _meanwhile(
                    usage_store.claim_new(conn, record_ids, batch_minute),
                    lambda: roll_up(unique),
                )
                fresh = unique
                if claimed is not None:
                    fresh = [r for r in unique if r.record_id in claimed]
                    if not fresh:
                        RECORDS_DUPLICATE.inc(len(requests))
                        return 0
                    rollups = roll_up(fresh)
                states = await self._states(conn, {r.key_id: r for r in fresh}, touched)
                findings: list[Finding] = []
                directory, config = ctx.directory, ctx.config

                def observe() -> None:
                    for r in fresh:
                        states[r.key_id].observe(r, directory.get(r.key_id), config, findings)

                await _meanwhile(usage_store.add_rollups(conn, rollups), observe)
                await activity_store.save_activity(conn, list(states.values()))
                alerts = await record_findings(conn, findings, directory, ctx.policy)
            for state in states.values():
                state.new_networks = None
                state.dirty = False
        except BaseException:
            ctx.cache.drop(touched)
            raise
        self.max_minute = max(self.max_minute, batch_minute)
        RECORDS_COUNTED.inc(len(fresh))
        RECORDS_DUPLICATE.inc(len(requests) - len(fresh))
        CACHED_KEYS.set(len(ctx.cache))
        if alerts:
            ctx.on_alerts()
        return len(fresh)

    async def _states(
        self, conn: object, first_of_key: dict[str, Request], touched: set[str]
    ) -> dict[str, KeyActivity]:
        cache = self.ctx.cache
        states: dict[str, KeyActivity] = {}
        missing: list[str] = []
        for key_id in first_of_key:
            touched.add(key_id)
            state = cache.get(key_id)
            if state is None:
                missing.append(key_id)
            else:
                states[key_id] = state
        if missing:
            loaded = await activity_store.load_activity(conn, missing)
            for key_id in missing:
                state = loaded.get(key_id)
                if state is None:
                    state = KeyActivity(key_id, first_of_key[key_id].account_id)
                cache.put(state)
                states[key_id] = state
        return states

    async def prune(self) -> None:
        """Forget record ids older than the dedup horizon (event time)."""
        if self.max_minute:
            cutoff = self.max_minute - self.ctx.dedup_horizon_minutes
            async with self.ctx.pool().acquire() as conn:
                await usage_store.forget_seen_before(conn, cutoff)
