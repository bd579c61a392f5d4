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
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from services.usage.adapters import activity_store, usage_store
from services.usage.app.alerting import record_findings
from services.usage.app.context import UsageContext
from services.usage.app.metrics import CACHED_KEYS, RECORDS_COUNTED, RECORDS_DUPLICATE
from services.usage.domain import lifecycle
from services.usage.domain.activity import KeyActivity
from services.usage.domain.detectors import Finding
from services.usage.domain.requests import Request, roll_up


class Ingestor:
    def __init__(self, ctx: UsageContext) -> None:
        self.ctx = ctx
        self.max_minute = 0
        """Newest event-time minute seen: the dedup horizon is counted back from it."""

    async def ingest(self, requests: Sequence[Request]) -> int:
        """Returns how many requests were new (the others were duplicates)."""
        seen: set[str] = set()
        unique: list[Request] = []
        for r in requests:  # the first occurrence in the batch wins
            if r.record_id not in seen:
                seen.add(r.record_id)
                unique.append(r)
        ctx = self.ctx
        touched: set[str] = set()
        try:
            async with ctx.lock, ctx.pool().acquire() as conn, conn.transaction():
                await ctx.directory.ensure_loaded(conn)
                # A clock far ahead on one gateway must not push the horizon past the others.
                batch_minute = min(max(r.minute for r in unique), int(time.time() // 60) + 5)
                claimed = await usage_store.claim_new(
                    conn, [r.record_id for r in unique], batch_minute
                )
                fresh = unique if claimed is None else [r for r in unique if r.record_id in claimed]
                if not fresh:
                    RECORDS_DUPLICATE.inc(len(requests))
                    return 0
                states = await self._states(conn, {r.key_id: r for r in fresh}, touched)
                findings: list[Finding] = []
                directory, config = ctx.directory, ctx.config
                for r in fresh:
                    states[r.key_id].observe(r, directory.get(r.key_id), config, findings)
                findings += lifecycle.canary_uses(fresh, directory.get, config)
                await usage_store.add_rollups(conn, roll_up(fresh))
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
