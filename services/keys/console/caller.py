"""Who is asking: the FastAPI dependencies every console route takes its context and its
signed-in caller from.

`signed_in` re-checks the session's key on every request, so a key disabled or revoked
ends its sessions at once; without a valid session it raises SignInRequired, which an
exception handler turns into the sign-in page (services.keys.console.install).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from contracts import SCOPE_KEYS_MANAGE
from servicekit.errors import ApiError
from services.keys.console.context import KEYS_PAGE, Console
from services.keys.console.forms import read_form
from services.keys.console.sessions import SESSION_COOKIE, Session
from services.keys.entrypoints.auth import Principal, authenticate_header


class SignInRequired(Exception):
    """No valid session: the person is sent to sign in, and back here afterwards."""

    def __init__(self, back_to: str, notice: str | None = None) -> None:
        super().__init__(back_to)
        self.back_to = back_to
        self.notice = notice


@dataclass(frozen=True)
class SignedIn:
    session: Session
    principal: Principal

    @property
    def account_id(self) -> str:
        return self.principal.account_id


def console(request: Request) -> Console:
    """The console the key service was built with (install puts it on the app's state)."""
    found: Console = request.app.state.console
    return found


ConsoleContext = Annotated[Console, Depends(console)]


async def authenticate(console: Console, request: Request, access_key: str) -> Principal:
    """The key's principal, if it may use the console (scope keys:manage); else ApiError."""
    return await authenticate_header(
        console.ctx,
        f"Bearer {access_key}",
        request.client.host if request.client else None,
        request.headers.get("user-agent"),
        request.url.path,
        SCOPE_KEYS_MANAGE,
    )


async def signed_in(request: Request, console: ConsoleContext) -> SignedIn:
    """The session's person, re-checked against the key they signed in with."""
    back_to = KEYS_PAGE
    if request.method == "GET":  # a form's target is no page to come back to
        back_to = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    session = await console.store.find(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise SignInRequired(back_to)
    try:
        principal = await authenticate(console, request, session.access_key)
    except ApiError:
        await console.store.close(session.token)
        raise SignInRequired(back_to, "session-ended") from None
    if principal.key_id != session.key_id:
        await console.store.close(session.token)
        raise SignInRequired(back_to)
    me = SignedIn(session, principal)
    request.state.console_caller = me  # what a refusal page shows as signed in
    return me


async def signed_in_on_key(
    key_id: uuid.UUID, request: Request, console: ConsoleContext
) -> SignedIn:
    """The signed-in caller on a key's address. The key id is this dependency's own
    parameter so that FastAPI checks it first: an address that names no key is "no such
    page", whether or not anybody is signed in."""
    return await signed_in(request, console)


Caller = Annotated[SignedIn, Depends(signed_in)]
KeyCaller = Annotated[SignedIn, Depends(signed_in_on_key)]


def caller_of(request: Request) -> SignedIn | None:
    """The caller `signed_in` found for this request, if it found one."""
    me: SignedIn | None = getattr(request.state, "console_caller", None)
    return me


async def posted(request: Request, console: ConsoleContext, me: Caller) -> dict[str, Any]:
    """The signed-in person's form, checked against CSRF before anything else reads it."""
    return await read_form(request, console.secrets, me.session.token)


async def posted_on_key(request: Request, console: ConsoleContext, me: KeyCaller) -> dict[str, Any]:
    """`posted`, for a form on a key's address (see signed_in_on_key)."""
    return await read_form(request, console.secrets, me.session.token)


Posted = Annotated[dict[str, Any], Depends(posted)]
PostedOnKey = Annotated[dict[str, Any], Depends(posted_on_key)]
