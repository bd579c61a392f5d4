"""The console's pages not yet moved to services/keys/console/pages (being moved)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from contracts import (
    AlertKind,
    Severity,
)
from servicekit.errors import ApiError
from services.keys.app import use_cases
from services.keys.console import naming
from services.keys.console.backends import BackendError
from services.keys.console.caller import SignedIn, signed_in
from services.keys.console.context import BASE, KEYS_PAGE, Console, back_to_key
from services.keys.console.forms import (
    GRACE_CHOICES,
    once,
    one,
    read_form,
)
from services.keys.console.pages.key_secret import secret_page
from services.keys.console.reads import (
    key_or_404,
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


def build_router(console: Console) -> APIRouter:  # noqa: PLR0915 - one block per page
    router = APIRouter(include_in_schema=False)
    c = console

    # -- the keys -------------------------------------------------------------------------

    @router.post(KEYS_PAGE + "/{key_id}/disable")
    async def disable_key(request: Request, key_id: uuid.UUID) -> Response:
        return await _reasoned(request, key_id, "disabled")

    @router.post(KEYS_PAGE + "/{key_id}/enable")
    async def enable_key(request: Request, key_id: uuid.UUID) -> Response:
        return await _reasoned(request, key_id, "enabled")

    async def _reasoned(request: Request, key_id: uuid.UUID, action: str) -> Response:
        async def render(me: SignedIn, values: dict[str, Any]) -> Response:
            reason = one(values, "reason")[:500]
            if action == "disabled":
                why = reason or "Disabled in the console"
                await c.change(
                    request, me,
                    lambda tx, account, m: use_cases.disable(tx, account, key_id, why, m),
                )  # fmt: skip
            else:
                await c.change(
                    request, me,
                    lambda tx, account, m: use_cases.enable(tx, account, key_id, reason or None, m),
                )  # fmt: skip
            if values.get("back") == "list":
                return RedirectResponse(f"{KEYS_PAGE}?done={action}", status_code=303)
            return back_to_key(key_id, action)

        return await _submit(c, request, render)

    @router.post(KEYS_PAGE + "/{key_id}/rotate")
    async def rotate_key(request: Request, key_id: uuid.UUID) -> Response:
        async def render(me: SignedIn, values: dict[str, Any]) -> Response:
            grace = one(values, "grace_period_seconds") or "0"
            if grace not in {value for value, _ in GRACE_CHOICES}:
                raise ApiError(422, "invalid", "Choose one of the grace periods offered.")
            seconds, tools = int(grace), c.ctx.tools
            outcome = await c.change(
                request, me,
                lambda tx, account, m: use_cases.rotate(tx, tools, account, key_id, seconds, m),
                once=once(values, "RotateKey", f"console rotate {key_id}", str(seconds)),
            )  # fmt: skip
            if key_id == me.session.key_id and outcome.secret is not None:
                await c.store.reseal(me.session, outcome.secret.plaintext)  # stay signed in
            return secret_page(c, request, me, outcome, "rotated")

        return await _submit(c, request, render)

    @router.post(KEYS_PAGE + "/{key_id}/reveal")
    async def reveal_key(request: Request, key_id: uuid.UUID) -> Response:
        async def render(me: SignedIn, _: dict[str, Any]) -> Response:
            outcome = await c.change(
                request, me,
                lambda tx, account, m: use_cases.reveal(tx, c.ctx.tools, account, key_id, m),
            )  # fmt: skip
            return secret_page(c, request, me, outcome, "revealed")

        return await _submit(c, request, render)

    @router.get(KEYS_PAGE + "/{key_id}/revoke")
    async def revoke_confirmation(request: Request, key_id: uuid.UUID) -> Response:
        async def render(me: SignedIn) -> Response:
            key = await key_or_404(c, me, key_id)
            return c.page(request, "revoke.html", me, key=key, tab="keys")

        return await _view(c, request, render)

    @router.post(KEYS_PAGE + "/{key_id}/revoke")
    async def revoke_key(request: Request, key_id: uuid.UUID) -> Response:
        async def render(me: SignedIn, values: dict[str, Any]) -> Response:
            key = await key_or_404(c, me, key_id)
            if one(values, "confirm_name") != key.name:
                return c.page(
                    request, "revoke.html", me, 422, key=key, tab="keys",
                    error="Type the key's name exactly to confirm.",
                )  # fmt: skip
            reason = one(values, "reason")[:500] or None
            await c.change(
                request, me,
                lambda tx, account, m: use_cases.revoke(tx, account, key_id, reason, m),
            )  # fmt: skip
            return back_to_key(key_id, "revoked")

        return await _submit(c, request, render)

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
