"""The console's pages not yet moved to services/keys/console/pages (being moved)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from contracts import (
    AlertKind,
    Severity,
)
from servicekit.errors import ApiError
from services.keys.console import naming
from services.keys.console.backends import BackendError
from services.keys.console.caller import SignedIn, signed_in
from services.keys.console.context import BASE, Console
from services.keys.console.forms import (
    read_form,
)
from services.keys.console.reads import (
    shown,
    unused,
    unused_keys,
)
from services.keys.console.refusals import REFUSALS, refusal_page

AUDIT_ACTIONS = (
    "key.created", "key.updated", "key.disabled", "key.enabled", "key.rotated",
    "key.revealed", "key.revoked", "key.expired", "command.rejected", "alert.raised",
)  # fmt: skip
ALERT_KINDS: tuple[str, ...] = get_args(AlertKind)
SEVERITIES: tuple[str, ...] = get_args(Severity)


async def _view(
    c: Console, request: Request, render: Callable[[SignedIn], Awaitable[Response]]
) -> Response:
    me = await signed_in(request, c)
    try:
        return await render(me)
    except REFUSALS as refused:
        return refusal_page(c, request, me, refused)


async def _submit(
    c: Console,
    request: Request,
    render: Callable[[SignedIn, dict[str, Any]], Awaitable[Response]],
) -> Response:
    me = await signed_in(request, c)
    try:
        return await render(me, await read_form(request, c.secrets, me.session.token))
    except REFUSALS as refused:
        return refusal_page(c, request, me, refused)


def build_router(console: Console) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    c = console

    # -- the keys -------------------------------------------------------------------------

    # -- usage and alerts, audit -------------------------------------------------------------

    @router.get(f"{BASE}/settings/usage")
    async def usage_page(
        request: Request, kind: str | None = None, severity: str | None = None
    ) -> Response:
        async def render(me: SignedIn) -> Response:
            idle = await unused_keys(c, me)
            alerts, alerts_error = await shown(
                c.backends.alerts(
                    me.session.access_key,
                    kind=kind if kind in ALERT_KINDS else None,
                    severity=severity if severity in SEVERITIES else None,
                    limit=100,
                )
            )
            return c.page(
                request, "usage.html", me, alerts=alerts["items"], alerts_error=alerts_error,
                unused_keys=idle, kinds=ALERT_KINDS, kind=kind, severity=severity,
                severities=SEVERITIES,
                unused=unused, unused_after_days=naming.UNUSED_AFTER_DAYS, tab="usage",
            )  # fmt: skip

        return await _view(c, request, render)

    @router.get(f"{BASE}/settings/audit")
    async def audit_page(request: Request) -> Response:
        async def render(me: SignedIn) -> Response:
            filters = _audit_filters(request)
            page, audit_error = await shown(
                c.backends.audit_events(
                    me.session.access_key, limit=50,
                    cursor=request.query_params.get("cursor"), **filters,
                )
            )  # fmt: skip
            chosen = {k: request.query_params.get(k, "") for k in filters}
            return c.page(
                request, "audit.html", me, records=page["items"], audit_error=audit_error,
                next_cursor=page.get("next_cursor"), filters=chosen, actions=AUDIT_ACTIONS,
                query=urlencode({k: v for k, v in chosen.items() if v}), tab="audit",
            )  # fmt: skip

        return await _view(c, request, render)

    @router.get(f"{BASE}/settings/audit.csv")
    async def audit_csv(request: Request) -> Response:
        async def render(me: SignedIn) -> Response:
            filters = _audit_filters(request)
            try:
                export = await c.backends.open_export(me.session.access_key, "csv", **filters)
            except BackendError as error:
                status = 404 if error.status == 404 else 502
                return c.page(
                    request, "error.html", me, status, title="Audit log", message=str(error)
                )
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            return StreamingResponse(
                export.aiter_bytes(),
                background=BackgroundTask(export.aclose),
                media_type="text/csv; charset=utf-8",
                headers={
                    "Content-Disposition": (
                        f'attachment; filename="audit-{me.account_id}-{stamp}.csv"'
                    ),
                    "Cache-Control": "no-store",
                },
            )

        return await _view(c, request, render)

    return router


def _audit_filters(request: Request) -> dict[str, Any]:
    params = request.query_params
    key_id = params.get("key_id", "").strip()
    try:
        key = str(uuid.UUID(key_id)) if key_id else None
    except ValueError:
        raise ApiError(422, "key_id_invalid", "The key filter takes a key id (a UUID).") from None
    action = params.get("action") or None
    return {
        "key_id": key,
        "actor_id": (params.get("actor_id") or "").strip()[:200] or None,
        "action": action if action in AUDIT_ACTIONS else None,
        "since": _day(params.get("since"), "since"),
        "until": _day(params.get("until"), "until", next_day=True),
    }


def _day(value: str | None, name: str, next_day: bool = False) -> datetime | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        day = None
    if day is None or not 2000 <= day.year <= 9000:
        raise ApiError(422, f"{name}_invalid", f"'{name}' takes a date, e.g. 2026-11-26.")
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start + timedelta(days=1) if next_day else start
