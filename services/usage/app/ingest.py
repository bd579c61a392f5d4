"""Ingest a batch of usage records: count each once, advance each key's detectors,
store rollups, state and alerts in one transaction.

Order of work, all inside the transaction:
1. drop what was counted before: records below the offsets stored with earlier batches
   (`record_offsets`, locked: a batch redelivered after a crash), and records whose id
   was counted lately (`RecentIds`: a record sent twice, at another offset);
2. store the batch's offsets and record ids (one row, `seen_batches`); load the detector
   state of keys not in the cache;
3. advance each key's detectors: at once by its per-minute rollups where that provably
   changes nothing but counters (`KeyActivity.observe_quietly`: no detector can fire, no
   minute closes), else request by request, in partition order (`KeyActivity.observe`);
4. upsert the per-minute rollups (aggregated here first), save the touched keys' state,
   store new alerts and containment commands.
The cache is trusted again only after the commit; a failure drops the touched keys.

The CPU work overlaps the server's: the rollups are computed while the ids and offsets are
written, and the detectors advance while the rollups are (`_meanwhile`). Nothing else
uses the connection. The recent ids learn the batch's after the commit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from services.usage.adapters import activity_store, grace_store, usage_store
from services.usage.app.alerting import record_findings
from services.usage.app.context import UsageContext
from services.usage.app.metrics import CACHED_KEYS, RECORDS_COUNTED, RECORDS_DUPLICATE
from services.usage.app.recent_ids import RecentIds
from services.usage.domain import lifecycle
from services.usage.domain.activity import KeyActivity, observe_batch
from services.usage.domain.detectors import Finding
from services.usage.domain.requests import Request, roll_up
from services.usage.domain.warnings import previous_secret_uses

T = TypeVar("T")
Ranges = dict[tuple[str, int], tuple[int, int]]
"""First and last offset of each (topic, partition) of a batch."""


class Source(Protocol):
    """Where a record was read (a Kafka consumer record)."""

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


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
        self.recent = RecentIds(ctx.dedup_memory_ids, ctx.seen_ids)

    def follow(self, ranges: Ranges) -> None:
        """Before a batch: a partition that does not continue where this process left it
        was read by another meanwhile (a rebalance): the caches are stale."""
        if self.ctx.cache.follow(ranges):
            self.recent.clear()

    async def ingest(
        self, topic: str, requests: Sequence[Request], sources: Sequence[Source], ranges: Ranges
    ) -> int:
        """Count `requests` (read from `sources` of `topic`, spanning `ranges`); returns
        how many were new (the others were counted before)."""
        ctx, recent = self.ctx, self.recent
        # A clock far ahead on one gateway must not push the horizon past the others.
        batch_minute = min(max(r.minute for r in requests), int(time.time() // 60) + 5)
        next_offsets = {partition: last + 1 for (_, partition), (_, last) in ranges.items()}
        touched: set[str] = set()
        try:
            async with ctx.lock, ctx.pool().acquire() as conn, conn.transaction():
                await ctx.directory.ensure_loaded(conn)
                if not recent.loaded:
                    await self._recall(conn)
                fresh = await self._fresh(conn, topic, requests, sources, ranges)
                fresh_ids = [r.record_id for r in fresh]
                _, rollups = await _meanwhile(
                    usage_store.record_batch(conn, topic, next_offsets, batch_minute, fresh_ids),
                    lambda: roll_up(fresh),
                )
                if not fresh:
                    RECORDS_DUPLICATE.inc(len(requests))
                    return 0
                accounts = {row.key_id: row.account_id for row in rollups}
                states = await self._states(conn, accounts, touched)
                findings: list[Finding] = []
                directory, config = ctx.directory, ctx.config

                def observe() -> None:
                    observe_batch(states, fresh, rollups, directory.get, config, findings)
                    findings.extend(lifecycle.canary_uses(fresh, directory.get, config))

                await _meanwhile(usage_store.add_rollups(conn, rollups), observe)
                await activity_store.save_activity(conn, list(states.values()))
                await grace_store.record_previous_secret_uses(conn, previous_secret_uses(fresh))
                alerts = await record_findings(conn, findings, directory, ctx.policy)
            for state in states.values():
                state.new_networks = None
                state.dirty = False
        except BaseException:
            ctx.cache.drop(touched)
            raise
        recent.add(batch_minute, fresh_ids)
        self.max_minute = max(self.max_minute, batch_minute)
        RECORDS_COUNTED.inc(len(fresh))
        RECORDS_DUPLICATE.inc(len(requests) - len(fresh))
        CACHED_KEYS.set(len(ctx.cache))
        if alerts:
            ctx.on_alerts()
        return len(fresh)

    async def _fresh(
        self,
        conn: object,
        topic: str,
        requests: Sequence[Request],
        sources: Sequence[Source],
        ranges: Ranges,
    ) -> Sequence[Request]:
        """The requests not counted before: above the stored offsets, of ids not counted
        lately, each id once (its first occurrence)."""
        counted = await usage_store.counted_through(conn, topic, [p for _, p in ranges])
        kept: Sequence[Request] = requests
        if any(first < counted.get(p, 0) for (_, p), (first, _) in ranges.items()):
            kept = [
                r
                for r, source in zip(requests, sources, strict=True)
                if source.offset >= counted.get(source.partition, 0)
            ]
        record_ids = [r.record_id for r in kept]
        repeated = self.recent.seen_before(record_ids)
        if repeated or len(set(record_ids)) < len(record_ids):  # rare: each id once
            once: list[Request] = []
            for r in kept:
                if r.record_id not in repeated:
                    repeated.add(r.record_id)
                    once.append(r)
            kept = once
        return kept

    async def _recall(self, conn: object) -> None:
        """Rebuild the recent ids from the stored batches (after a start or a rebalance)."""
        recent = self.recent
        for minute, ids in await usage_store.recent_ids(
            conn, self.ctx.dedup_horizon_minutes, recent.limit
        ):
            recent.add(minute, ids)
        recent.loaded = True

    async def _states(
        self, conn: object, accounts: dict[str, str], touched: set[str]
    ) -> dict[str, KeyActivity]:
        """The state of each key of `accounts` (key -> its account), from the cache or the
        database (or new)."""
        cache = self.ctx.cache
        states: dict[str, KeyActivity] = {}
        missing: list[str] = []
        for key_id in accounts:
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
                    state = KeyActivity(key_id, accounts[key_id])
                cache.put(state)
                states[key_id] = state
        return states

    async def prune(self) -> None:
        """Forget record ids older than the dedup horizon (event time)."""
        if self.max_minute:
            cutoff = self.max_minute - self.ctx.dedup_horizon_minutes
            async with self.ctx.pool().acquire() as conn:
                await usage_store.forget_seen_before(conn, cutoff)
            self.recent.forget_before(cutoff)
