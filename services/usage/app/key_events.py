"""Key events into the read model, and the one detector an event can trigger: a key
found used after it was disabled, revoked or expired, when the usage records of that use
were counted before the event arrived (the two topics race)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from contracts import Event, KeyReportedLeaked
from servicekit.consumer import Received
from servicekit.inbox import record_consumed
from services.usage.adapters import activity_store, directory_store
from services.usage.app.alerting import record_findings
from services.usage.app.context import UsageContext
from services.usage.domain import lifecycle
from services.usage.domain.detectors import Finding
from services.usage.domain.keys import ACTIVE, KeyInfo, fold
from services.usage.domain.limits import KeyLimits


async def apply_key_events(ctx: UsageContext, batch: Sequence[Received[Event]]) -> None:
    pending: dict[str, KeyInfo] = {}
    stopped: list[KeyInfo] = []
    reports: list[Finding] = []
    limits_changed: dict[str, float] = {}
    # The limit counter waits until the directory holds the new limits (app/limit_counter).
    limits_lock = ctx.limits.lock if ctx.limits is not None else contextlib.nullcontext()
    async with ctx.lock, limits_lock:
        async with ctx.pool().acquire() as conn, conn.transaction():
            await ctx.directory.ensure_loaded(conn)
            await record_consumed(conn, batch)
            for item in batch:
                key_id = str(item.message.key_id)
                before = pending.get(key_id) or ctx.directory.get(key_id)
                after = fold(before, item.message)
                if after is None:
                    continue  # seen already (redelivery, replay)
                pending[key_id] = after
                if isinstance(item.message, KeyReportedLeaked):
                    reports.append(lifecycle.key_reported_leaked(item.message))
                if after.status != ACTIVE and (before is None or before.status == ACTIVE):
                    stopped.append(after)
                if (before.limits if before else KeyLimits()) != after.limits:
                    limits_changed[key_id] = item.message.occurred_at.timestamp()
            await directory_store.save_many(conn, list(pending.values()))
            findings = reports + await _used_after(ctx, conn, stopped)
            alerts = await record_findings(conn, findings, ctx.directory, ctx.policy, pending)
            states = 0
            if ctx.limits is not None:
                states = await ctx.limits.limits_changed(
                    conn, [(pending[k], at) for k, at in limits_changed.items()]
                )
        for key in pending.values():  # the memory follows once the transaction has committed
            ctx.directory.commit(key)
    if alerts:
        ctx.on_alerts()
    if states and ctx.limits is not None:
        ctx.limits.on_states()


async def _used_after(ctx: UsageContext, conn: Any, keys: list[KeyInfo]) -> list[Finding]:
    if not keys:
        return []
    states = {k.key_id: s for k in keys if (s := ctx.cache.get(k.key_id)) is not None}
    missing = [k.key_id for k in keys if k.key_id not in states]
    if missing:
        states.update(await activity_store.load_activity(conn, missing))
    findings = []
    for key in keys:
        state = states.get(key.key_id)
        if state is None or state.last_used_at is None:
            continue
        since = key.status_since
        failure = state.last_failure_at
        refused = failure is not None and failure >= since
        if refused or state.last_used_at >= since + ctx.config.disabled_grace_s:
            at = failure if refused and failure is not None else state.last_used_at
            findings.append(
                lifecycle.disabled_key_in_use(
                    key.key_id, key.account_id, at, key.status, since, None, None, ctx.config
                )
            )
    return findings
