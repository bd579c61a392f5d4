"""Findings become alerts (and, under the containment policy, DisableKey commands), in
the transaction of whatever found them; the outbox publishes them after the commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from contracts import Alert, DisableKey
from services.usage.adapters import alert_store
from services.usage.app.directory import KeyDirectory
from services.usage.app.metrics import ALERTS_RAISED, CONTAINMENT_COMMANDS
from services.usage.domain.alerts import to_alert
from services.usage.domain.containment import ContainmentPolicy, disable_command
from services.usage.domain.detectors import Finding
from services.usage.domain.keys import ACTIVE, KeyInfo


async def record_findings(
    conn: Any,
    findings: Sequence[Finding],
    directory: KeyDirectory,
    policy: ContainmentPolicy,
    pending: dict[str, KeyInfo] | None = None,
) -> list[Alert]:
    """Store the findings as alerts; returns the alerts that are new."""
    if not findings:
        return []
    now = datetime.now(UTC)
    alerts: dict[object, Alert] = {}
    overlay = pending or {}

    def key_of(key_id: str) -> KeyInfo | None:
        return overlay.get(key_id) or directory.get(key_id)

    for finding in findings:
        key = key_of(finding.key_id)
        alert = to_alert(finding, key.name if key is not None else None, now)
        alerts.setdefault(alert.alert_id, alert)
    new_ids = await alert_store.insert_alerts(conn, list(alerts.values()))
    new = [a for a in alerts.values() if str(a.alert_id) in new_ids]
    commands: list[tuple[Alert, DisableKey]] = []
    for alert in new:
        key = key_of(str(alert.key_id))
        if policy.applies_to(alert) and key is not None and key.status == ACTIVE:
            commands.append((alert, disable_command(alert, now)))
    await alert_store.insert_commands(conn, commands)
    for alert in new:
        ALERTS_RAISED.labels(alert.kind, alert.severity).inc()
    CONTAINMENT_COMMANDS.inc(len(commands))
    return new
