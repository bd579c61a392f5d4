"""The periodic look for deadlines ahead: keys about to expire (`key_expiring`) and
rotations whose grace period ends within the hour while the old secret is still in use
(`grace_period_ending`). Runs at start and every USAGE_WARNING_SCAN_SECONDS; the alerts'
ids are derived from the deadline (domain/warnings.py), so a scan that finds a warning
again, after a restart or in another instance, stores nothing new."""

from __future__ import annotations

import time

from services.usage.adapters import grace_store
from services.usage.app.alerting import record_findings
from services.usage.app.context import UsageContext
from services.usage.domain import warnings
from services.usage.domain.detectors import Finding


async def warn_of_deadlines(ctx: UsageContext, default_days: int) -> int:
    """Returns how many new warnings were raised."""
    now = time.time()
    pool = ctx.pool()
    findings: list[Finding] = []
    for key_id, account_id, expires_at, days in await grace_store.expiring_keys(
        pool, now, default_days
    ):
        found = warnings.key_expiring(key_id, account_id, expires_at, now, days)
        if found is not None:
            findings.append(found)
    for key_id, account_id, ends_at, rotated_at, used_at in await grace_store.grace_ending_keys(
        pool, now, warnings.GRACE_WARNING_SECONDS
    ):
        found = warnings.grace_period_ending(key_id, account_id, ends_at, rotated_at, used_at, now)
        if found is not None:
            findings.append(found)
    if not findings:
        return 0
    async with pool.acquire() as conn, conn.transaction():
        alerts = await record_findings(conn, findings, ctx.directory, ctx.policy)
    if alerts:
        ctx.on_alerts()
    return len(alerts)
