"""The periodic look for active keys nobody uses: an info alert recommends disabling them
(under a containment policy with `unused_key:info`, they are disabled)."""

from __future__ import annotations

import time

from services.usage.adapters import directory_store
from services.usage.app.alerting import record_findings
from services.usage.app.context import UsageContext
from services.usage.domain import lifecycle
from services.usage.domain.detectors import Finding


async def find_unused_keys(ctx: UsageContext) -> int:
    """Returns how many new unused_key alerts were raised."""
    if not ctx.directory.loaded:
        return 0  # nothing consumed yet; the next round
    now = time.time()
    config = ctx.config
    candidates = await directory_store.unused_candidates(ctx.pool(), now - config.unused_s)
    findings: list[Finding] = []
    for key_id, created_at, last_used_at in candidates:
        key = ctx.directory.get(key_id)
        if key is None:
            continue
        finding = lifecycle.unused_key(
            key_id, key.account_id, now, created_at, last_used_at, config
        )
        if finding is not None:
            findings.append(finding)
    if not findings:
        return 0
    async with ctx.pool().acquire() as conn, conn.transaction():
        alerts = await record_findings(conn, findings, ctx.directory, ctx.policy)
    if alerts:
        ctx.on_alerts()
    return len(alerts)
