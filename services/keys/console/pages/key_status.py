"""A key's status changed from the console: disable, enable, and revoke (confirmed by
typing the key's name)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from services.keys.app import use_cases
from services.keys.console.caller import ConsoleContext, KeyCaller, PostedOnKey
from services.keys.console.context import KEYS_PAGE, back_to_key
from services.keys.console.forms import one, reason
from services.keys.console.reads import key_or_404
from services.keys.console.refusals import RefusalPages

router = APIRouter(include_in_schema=False, route_class=RefusalPages)


@router.post(KEYS_PAGE + "/{key_id}/disable")
async def disable_key(
    request: Request, key_id: uuid.UUID, console: ConsoleContext, me: KeyCaller, values: PostedOnKey
) -> Response:
    why = reason(values) or "Disabled in the console"
    await console.change(
        request, me, lambda tx, account, m: use_cases.disable(tx, account, key_id, why, m)
    )
    return _done(key_id, "disabled", values)


@router.post(KEYS_PAGE + "/{key_id}/enable")
async def enable_key(
    request: Request, key_id: uuid.UUID, console: ConsoleContext, me: KeyCaller, values: PostedOnKey
) -> Response:
    why = reason(values) or None
    await console.change(
        request, me, lambda tx, account, m: use_cases.enable(tx, account, key_id, why, m)
    )
    return _done(key_id, "enabled", values)


@router.get(KEYS_PAGE + "/{key_id}/revoke")
async def revoke_confirmation(
    request: Request, key_id: uuid.UUID, console: ConsoleContext, me: KeyCaller
) -> Response:
    key = await key_or_404(console, me, key_id)
    return console.page(request, "revoke.html", me, key=key, tab="keys")


@router.post(KEYS_PAGE + "/{key_id}/revoke")
async def revoke_key(
    request: Request, key_id: uuid.UUID, console: ConsoleContext, me: KeyCaller, values: PostedOnKey
) -> Response:
    key = await key_or_404(console, me, key_id)
    if one(values, "confirm_name") != key.name:
        return console.page(
            request, "revoke.html", me, 422, key=key, tab="keys",
            error="Type the key's name exactly to confirm.",
        )  # fmt: skip
    why = reason(values) or None
    await console.change(
        request, me, lambda tx, account, m: use_cases.revoke(tx, account, key_id, why, m)
    )
    return back_to_key(key_id, "revoked")


def _done(key_id: uuid.UUID, action: str, values: dict[str, Any]) -> RedirectResponse:
    """Back where the form was: the key list (its "disable unused key" button) or the key."""
    if values.get("back") == "list":
        return RedirectResponse(f"{KEYS_PAGE}?done={action}", status_code=303)
    return back_to_key(key_id, action)
