"""Add New Access Key: the form with the naming help, and the key it creates."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from contracts import ALL_PLATFORM_SCOPES, PRODUCTION, SCOPE_KEYS_VERIFY_ANY_ACCOUNT
from services.keys.app import use_cases
from services.keys.console import naming
from services.keys.console.caller import Caller, ConsoleContext, Posted, SignedIn
from services.keys.console.context import KEYS_PAGE, Console
from services.keys.console.forms import BUDGET_PERIODS, FormInvalid, key_attributes, once
from services.keys.console.pages.key_secret import secret_page
from services.keys.console.refusals import RefusalPages

router = APIRouter(include_in_schema=False, route_class=RefusalPages)


@router.get(f"{KEYS_PAGE}/new")
async def new_key_page(request: Request, console: ConsoleContext, me: Caller) -> Response:
    return new_key_form(console, request, me, {"environment": PRODUCTION})


@router.post(KEYS_PAGE)
async def create_key(
    request: Request, console: ConsoleContext, me: Caller, values: Posted
) -> Response:
    try:
        attributes = key_attributes(values, offered_scopes(me))
    except FormInvalid as invalid:
        return new_key_form(console, request, me, values, invalid.fields)
    # What the person sent, not the attributes: "expires in 30 days" is the same request on
    # a refresh, though its date has moved on.
    sent = json.dumps(values, sort_keys=True)
    tools = console.ctx.tools
    outcome = await console.change(
        request,
        me,
        lambda tx, account, m: use_cases.create(tx, tools, account, attributes, m),
        once=once(values, "CreateKey", "console create", sent),
    )
    return secret_page(console, request, me, outcome, "created")


def new_key_form(
    console: Console,
    request: Request,
    me: SignedIn,
    form: dict[str, Any],
    field_errors: dict[str, str] | None = None,
) -> HTMLResponse:
    return console.page(
        request, "new_key.html", me, 422 if field_errors else 200,
        groups=naming.NAME_GROUPS, names=naming.all_names(),
        environments=naming.ENVIRONMENTS, expiry_choices=naming.EXPIRY_CHOICES,
        budget_periods=BUDGET_PERIODS,
        template=naming.DESCRIPTION_TEMPLATE, example=naming.DESCRIPTION_EXAMPLE,
        scopes=offered_scopes(me),
        form=form, field_errors=field_errors or {}, tab="keys",
    )  # fmt: skip


def offered_scopes(me: SignedIn) -> list[str]:
    """What a new key may be given here: the signed-in key's own platform scopes, but never
    a platform gateway's (an operator grants that one, with the CLI)."""
    held = set(me.principal.scopes) - {SCOPE_KEYS_VERIFY_ANY_ACCOUNT}
    return [scope for scope in ALL_PLATFORM_SCOPES if scope in held]
