"""A key's page: its facts, usage chart, alerts and history, and its name and description
edited in place."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from contracts import KeyPatch
from services.keys.app import use_cases
from services.keys.console.caller import ConsoleContext, KeyCaller, PostedOnKey
from services.keys.console.chart import RANGES
from services.keys.console.context import DONE_MESSAGES, KEYS_PAGE, back_to_key
from services.keys.console.forms import GRACE_CHOICES, QUIET_CHOICES, one, pinned_version
from services.keys.console.reads import (
    key_history,
    key_limits,
    key_or_404,
    key_usage,
    shown,
    unused,
)
from services.keys.console.refusals import RefusalPages

router = APIRouter(include_in_schema=False, route_class=RefusalPages)


@router.get(KEYS_PAGE + "/{key_id}")
async def key_page(
    request: Request,
    key_id: uuid.UUID,
    console: ConsoleContext,
    me: KeyCaller,
    range: str = "24h",
    done: str | None = None,
) -> Response:
    key = await key_or_404(console, me, key_id)
    history = await key_history(console, key_id)
    usage = await key_usage(console, me, key, range if range in RANGES else "24h")
    alerts, alerts_error = await shown(
        console.backends.alerts(me.session.access_key, key_id=key_id, limit=20)
    )
    return console.page(
        request, "key.html", me, key=usage.key, history=history, chart=usage.chart,
        limits=key_limits(console, usage.key),
        usage_error=usage.error, alerts=alerts["items"], alerts_error=alerts_error,
        ranges=list(RANGES), unused=unused(usage.key), grace_choices=GRACE_CHOICES,
        quiet_choices=QUIET_CHOICES,
        reveal_enabled=console.config.reveal_enabled, notice=DONE_MESSAGES.get(done or ""),
        tab="keys",
    )  # fmt: skip


@router.post(KEYS_PAGE + "/{key_id}/edit")
async def edit_key(
    request: Request, key_id: uuid.UUID, console: ConsoleContext, me: KeyCaller, values: PostedOnKey
) -> Response:
    patch = KeyPatch(name=one(values, "name"), description=one(values, "description") or None)
    version = pinned_version(values)
    await console.change(
        request,
        me,
        lambda tx, account, m: use_cases.update(tx, account, key_id, patch, m, version),
        retry=False,
    )
    return back_to_key(key_id, "updated")
