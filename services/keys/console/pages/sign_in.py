"""Sign-in with an access key of the account (scope keys:manage), and sign-out.

The sign-in form's CSRF token is bound to a nonce in a short-lived cookie, since there is
no session yet; refused sign-ins are throttled per address.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from servicekit.errors import ApiError
from services.keys.console.caller import ConsoleContext, authenticate
from services.keys.console.context import BASE, KEYS_PAGE, Console
from services.keys.console.forms import local_page, read_form
from services.keys.console.sessions import (
    SESSION_COOKIE,
    SESSION_LIFETIME,
    SIGN_IN_COOKIE,
    new_token,
)
from services.keys.entrypoints.auth import Principal

router = APIRouter(include_in_schema=False)

SIGN_IN_NOTICES = {
    "signed-out": "You are signed out.",
    "session-ended": "Your session ended: the key you signed in with is no longer accepted.",
}


class SignInRefused(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@router.get(f"{BASE}/sign-in")
async def sign_in_page(
    request: Request, console: ConsoleContext, next: str = KEYS_PAGE, notice: str | None = None
) -> Response:
    return sign_in_form(
        console, request, local_page(next), notice=SIGN_IN_NOTICES.get(notice or "")
    )


@router.post(f"{BASE}/sign-in")
async def sign_in(request: Request, console: ConsoleContext) -> Response:
    nonce = request.cookies.get(SIGN_IN_COOKIE)
    try:
        values = await read_form(request, console.secrets, f"sign-in:{nonce}" if nonce else None)
    except ApiError as refused:
        return console.page(
            request, "error.html", None, 403, title="Sign-in", message=refused.message
        )
    access_key = _text(values, "access_key").strip()
    next_page = local_page(_text(values, "next", KEYS_PAGE))
    try:
        principal = await _admitted(console, request, access_key)
    except SignInRefused as refused:
        return sign_in_form(console, request, next_page, refused.status, error=refused.message)
    return await _open_session(console, request, principal, access_key, next_page)


@router.post(f"{BASE}/sign-out")
async def sign_out(request: Request, console: ConsoleContext) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    try:
        await read_form(request, console.secrets, token)
    except ApiError as refused:
        return console.page(
            request, "error.html", None, 403, title="Sign-out", message=refused.message
        )
    await console.store.close(token)
    response = RedirectResponse(f"{BASE}/sign-in?notice=signed-out", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=BASE)
    return response


def sign_in_form(
    console: Console, request: Request, next_page: str, status: int = 200, **shown: str | None
) -> Response:
    """The sign-in form, with a fresh nonce (cookie) its CSRF token is bound to."""
    nonce = new_token()
    response = console.page(
        request, "sign_in.html", None, status,
        sign_in_csrf=console.secrets.csrf_token(f"sign-in:{nonce}"), next=next_page, **shown,
    )  # fmt: skip
    console.cookie(request, response, SIGN_IN_COOKIE, nonce, max_age=3600)
    return response


async def _admitted(console: Console, request: Request, access_key: str) -> Principal:
    """The key's principal if it may sign in; SignInRefused says why not."""
    if not access_key or len(access_key) > 512:
        raise SignInRefused("Paste an access key of this account.", 400)
    address = request.client.host if request.client else None
    if wait := console.throttle.wait_seconds(address):
        raise SignInRefused(
            f"Too many refused sign-ins from your address; try again in {int(wait) + 1} s.", 429
        )
    try:
        return await authenticate(console, request, access_key)
    except ApiError as refused:
        console.throttle.refused(address)
        raise SignInRefused(
            "That key cannot sign in: it lacks the scope keys:manage."
            if refused.code == "insufficient_scope"
            else "That access key is not accepted (unknown, disabled, revoked or expired).",
            refused.status,
        ) from None


async def _open_session(
    console: Console, request: Request, principal: Principal, access_key: str, next_page: str
) -> Response:
    await console.store.close(request.cookies.get(SESSION_COOKIE))  # no second live session
    token = await console.store.open(principal.key_id, principal.account_id, access_key)
    response = RedirectResponse(next_page, status_code=303)
    lifetime = int(SESSION_LIFETIME.total_seconds())
    console.cookie(request, response, SESSION_COOKIE, token, max_age=lifetime)
    response.delete_cookie(SIGN_IN_COOKIE, path=BASE)
    return response


def _text(values: dict[str, Any], name: str, default: str = "") -> str:
    """A field of the sign-in form; sent twice, it counts as not sent."""
    value = values.get(name, default)
    return value if isinstance(value, str) else default
