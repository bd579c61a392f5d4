"""Automatic containment: which alerts make the usage service ask for a key's disabling.

Off by default. A policy is a list of `kind:min_severity` pairs, for instance
`disabled_key_in_use:critical,volume_spike:critical`: an alert of that kind at that
severity or higher sends a DisableKey command. The command id is derived from the alert
id, so a redelivered or replayed alert never sends a second, different command.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import get_args

from contracts import Actor, Alert, AlertKind, DisableKey, DisableKeyData, Severity

USAGE_MONITOR = Actor(type="system", id="usage-monitor")
SEVERITY_RANK: Mapping[str, int] = {"info": 0, "warning": 1, "critical": 2}
_COMMAND_NAMESPACE = uuid.UUID("6b1d3c52-1f0e-4a7e-9c55-5e2a4a0c7d11")


@dataclasses.dataclass(frozen=True)
class ContainmentPolicy:
    rules: Mapping[str, str]
    """kind -> the lowest severity that triggers containment."""

    @classmethod
    def parse(cls, text: str) -> ContainmentPolicy:
        rules: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in text.split(","))):
            kind, sep, severity = (part.strip() for part in pair.partition(":"))
            if kind not in get_args(AlertKind):
                raise ValueError(f"{pair!r}: unknown alert kind {kind!r}")
            if not sep or severity not in get_args(Severity):
                raise ValueError(f"{pair!r}: write kind:severity (info, warning or critical)")
            rules[kind] = severity
        return cls(rules)

    @property
    def enabled(self) -> bool:
        return bool(self.rules)

    def applies_to(self, alert: Alert) -> bool:
        floor = self.rules.get(alert.kind)
        return floor is not None and SEVERITY_RANK[alert.severity] >= SEVERITY_RANK[floor]


def disable_command(alert: Alert, issued_at: datetime) -> DisableKey:
    """The DisableKey command that contains `alert`'s key; the reason names the alert."""
    reason = f"usage-monitor containment of alert {alert.alert_id} ({alert.kind}): {alert.summary}"
    return DisableKey(
        command_id=uuid.uuid5(_COMMAND_NAMESPACE, str(alert.alert_id)),
        account_id=alert.account_id,
        key_id=alert.key_id,
        actor=USAGE_MONITOR,
        issued_at=issued_at,
        correlation_id=f"alert:{alert.alert_id}",
        data=DisableKeyData(reason=reason[:500]),
    )
