"""Usage & alerts: the usage service's alerts for the account, and its unused keys (each
with a button to disable it)."""

from __future__ import annotations

from typing import get_args

from fastapi import APIRouter, Request
from fastapi.responses import Response

from contracts import AlertKind, Severity
from services.keys.console import naming
from services.keys.console.caller import Caller, ConsoleContext
from services.keys.console.context import BASE
from services.keys.console.reads import shown, unused, unused_keys
from services.keys.console.refusals import RefusalPages

router = APIRouter(include_in_schema=False, route_class=RefusalPages)

ALERT_KINDS: tuple[str, ...] = get_args(AlertKind)
SEVERITIES: tuple[str, ...] = get_args(Severity)


@router.get(f"{BASE}/settings/usage")
async def usage_page(
    request: Request,
    console: ConsoleContext,
    me: Caller,
    kind: str | None = None,
    severity: str | None = None,
) -> Response:
    idle = await unused_keys(console, me)
    alerts, alerts_error = await shown(
        console.backends.alerts(
            me.session.access_key,
            kind=kind if kind in ALERT_KINDS else None,
            severity=severity if severity in SEVERITIES else None,
            limit=100,
        )
    )
    return console.page(
        request, "usage.html", me, alerts=alerts["items"], alerts_error=alerts_error,
        unused_keys=idle, kinds=ALERT_KINDS, kind=kind, severity=severity,
        severities=SEVERITIES,
        unused=unused, unused_after_days=naming.UNUSED_AFTER_DAYS, tab="usage",
    )  # fmt: skip
