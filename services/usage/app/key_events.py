"""Key events into the read model, and the one detector an event can trigger: a key
found used after it was disabled, revoked or expired, when the usage records of that use
were counted before the event arrived (the two topics race)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contracts import Event, KeyReportedLeaked
from servicekit.consumer import Received
from servicekit.inbox import record_consumed
from services.usage.adapters import activity_store
from services.usage.app.alerting import record_findings
from services.usage.app.context import UsageContext
from services.usage.domain import lifecycle
from services.usage.domain.detectors import Finding
from services.usage.domain.keys import ACTIVE, KeyInfo


async def apply_key_events(ctx: UsageContext, batch: Sequence[Received[Event]]) -> None:
    """The ingest's read model (`key_directory`); the limit counter folds the same events
    into its own (LimitCounter.key_events)."""
    pending: dict[str, KeyInfo] = {}
    stopped: list[KeyInfo] = []
    reports: list[Finding] = []
    async with ctx.lock:
        async with ctx.pool().acquire() as conn, conn.transaction():
            await ctx.directory.ensure_loaded(conn)
            await record_consumed(conn, batch)
            for event, before, after in ctx.directory.changes(batch, pending):
                if isinstance(event, KeyReportedLeaked):
                    reports.append(lifecycle.key_reported_leaked(event))
                if after.status != ACTIVE and (before is None or before.status == ACTIVE):
                    stopped.append(after)
            await ctx.directory.save(conn, pending)
            findings = reports + await _used_after(ctx, conn, stopped)
            alerts = await record_findings(conn, findings, ctx.directory, ctx.policy, pending)
        for key in pending.values():  # the memory follows once the transaction has committed
            ctx.directory.commit(key)
    if alerts:
        ctx.on_alerts()


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
