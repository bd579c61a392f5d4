"""A key's secret handed out: rotated, or revealed again (when the service allows it), and
the page that shows a secret once (after create, rotate or reveal)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from services.keys.app import use_cases
from services.keys.console.caller import (
    ConsoleContext,
    KeyCaller,
    PostedOnKey,
    SignedIn,
    posted_on_key,
)
from services.keys.console.context import KEYS_PAGE, Console
from services.keys.console.forms import grace_seconds, once, quiet_seconds
from services.keys.console.refusals import RefusalPages
from services.keys.entrypoints.schemas import KeyView

router = APIRouter(include_in_schema=False, route_class=RefusalPages)


def secret_page(
    console: Console, request: Request, me: SignedIn, outcome: use_cases.Outcome, how: str
) -> HTMLResponse:
    if outcome.secret is None:
        raise RuntimeError("this use case always returns the secret")
    return console.page(
        request, "secret.html", me, 201 if how == "created" else 200,
        key=KeyView.of(outcome.key), secret=outcome.secret.plaintext, how=how, tab="keys",
    )  # fmt: skip


@router.post(KEYS_PAGE + "/{key_id}/rotate")
async def rotate_key(
    request: Request, key_id: uuid.UUID, console: ConsoleContext, me: KeyCaller, values: PostedOnKey
) -> Response:
    seconds, tools = grace_seconds(values), console.ctx.tools
    quiet = quiet_seconds(values, seconds)
    asks = str(seconds) if quiet is None else f"{seconds} quiet {quiet}"
    outcome = await console.change(
        request,
        me,
        lambda tx, account, m: use_cases.rotate(tx, tools, account, key_id, seconds, m, quiet),
        once=once(values, "RotateKey", f"console rotate {key_id}", asks),
    )
    if key_id == me.session.key_id and outcome.secret is not None:
        await console.store.reseal(me.session, outcome.secret.plaintext)  # stay signed in
    return secret_page(console, request, me, outcome, "rotated")


@router.post(KEYS_PAGE + "/{key_id}/reveal", dependencies=[Depends(posted_on_key)])
async def reveal_key(
    request: Request, key_id: uuid.UUID, console: ConsoleContext, me: KeyCaller
) -> Response:
    tools = console.ctx.tools
    outcome = await console.change(
        request, me, lambda tx, account, m: use_cases.reveal(tx, tools, account, key_id, m)
    )
    return secret_page(console, request, me, outcome, "revealed")


@router.post(KEYS_PAGE + "/{key_id}/rotate-and-enable")
async def rotate_and_enable_key(
    request: Request, key_id: uuid.UUID, console: ConsoleContext, me: KeyCaller, values: PostedOnKey
) -> Response:
    """One click for a key quarantined after a leak report: a new secret, then enabled."""
    tools = console.ctx.tools
    outcome = await console.change(
        request,
        me,
        lambda tx, account, m: use_cases.rotate_and_enable(tx, tools, account, key_id, m),
        once=once(values, "RotateKey", f"console rotate-and-enable {key_id}", "0"),
    )
    if key_id == me.session.key_id and outcome.secret is not None:
        await console.store.reseal(me.session, outcome.secret.plaintext)
    return secret_page(console, request, me, outcome, "rotated")
