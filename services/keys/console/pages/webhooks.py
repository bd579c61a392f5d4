"""Webhooks: where the usage service posts the account's alerts, signed. Listed, created
(the signing secret shown once), enabled again once disabled, deleted, and each one's
delivery log; all through the
usage service's API, with the signed-in person's key."""

from __future__ import annotations

import uuid
from typing import Any, get_args

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from contracts import AlertKind, Severity
from servicekit.errors import ApiError
from services.keys.console.backends import BackendError
from services.keys.console.caller import Caller, ConsoleContext, Posted, SignedIn
from services.keys.console.context import BASE, Console
from services.keys.console.forms import one
from services.keys.console.reads import shown
from services.keys.console.refusals import RefusalPages

router = APIRouter(include_in_schema=False, route_class=RefusalPages)
PAGE = f"{BASE}/settings/webhooks"
KINDS: tuple[str, ...] = get_args(AlertKind)
SEVERITIES: tuple[str, ...] = get_args(Severity)


@router.get(PAGE)
async def webhooks_page(
    request: Request, console: ConsoleContext, me: Caller, done: str | None = None
) -> Response:
    return await _page(console, request, me, {"min_severity": "warning"}, done=done)


@router.post(PAGE)
async def create_webhook(
    request: Request, console: ConsoleContext, me: Caller, values: Posted
) -> Response:
    kinds = values.get("kinds", [])
    settings = {
        "url": one(values, "url"),
        "kinds": [k for k in (kinds if isinstance(kinds, list) else [kinds]) if k in KINDS],
        "min_severity": one(values, "min_severity") or "info",
    }
    try:
        created = await console.backends.create_webhook(me.session.access_key, settings)
    except BackendError as refused:
        return await _page(console, request, me, settings, error=str(refused), status=422)
    return await _page(console, request, me, {"min_severity": "warning"}, created=created)


@router.post(PAGE + "/{webhook_id}/delete")
async def delete_webhook(
    webhook_id: uuid.UUID, console: ConsoleContext, me: Caller, _: Posted
) -> Response:
    try:
        await console.backends.delete_webhook(me.session.access_key, webhook_id)
    except BackendError as refused:
        status = refused.status if refused.status in (403, 404) else 503
        raise ApiError(status, "not_done", str(refused)) from None
    return RedirectResponse(f"{PAGE}?done=deleted", status_code=303)


@router.post(PAGE + "/{webhook_id}/enable")
async def enable_webhook(
    request: Request, webhook_id: uuid.UUID, console: ConsoleContext, me: Caller, _: Posted
) -> Response:
    try:
        await console.backends.enable_webhook(me.session.access_key, webhook_id)
    except BackendError as refused:
        if refused.status == 422:  # its URL may no longer be used: say why on the page
            form = {"min_severity": "warning"}
            return await _page(console, request, me, form, error=str(refused), status=422)
        status = refused.status if refused.status in (403, 404) else 503
        raise ApiError(status, "not_done", str(refused)) from None
    return RedirectResponse(f"{PAGE}?done=enabled", status_code=303)


@router.get(PAGE + "/{webhook_id}")
async def deliveries_page(
    request: Request, webhook_id: uuid.UUID, console: ConsoleContext, me: Caller
) -> Response:
    log, error = await shown(console.backends.webhook_deliveries(me.session.access_key, webhook_id))
    if error is None and not log["items"] and not await _owns(console, me, webhook_id):
        raise ApiError(404, "not_found", "No such webhook in this account.")
    return console.page(
        request, "webhook.html", me, webhook_id=webhook_id, deliveries=log["items"],
        deliveries_error=error, tab="webhooks",
    )  # fmt: skip


async def _page(
    console: Console, request: Request, me: SignedIn, form: dict[str, Any],
    status: int = 200, **shown_too: Any,
) -> Response:  # fmt: skip
    listed, error = await shown(console.backends.webhooks(me.session.access_key))
    return console.page(
        request, "webhooks.html", me, status, webhooks=listed["items"], webhooks_error=error,
        form=form, kinds=KINDS, severities=SEVERITIES, tab="webhooks", **shown_too,
    )  # fmt: skip


async def _owns(console: Console, me: SignedIn, webhook_id: uuid.UUID) -> bool:
    """Whether the account has the webhook (an empty log is also another's or none)."""
    listed, _ = await shown(console.backends.webhooks(me.session.access_key))
    return any(hook.get("id") == str(webhook_id) for hook in listed["items"])
