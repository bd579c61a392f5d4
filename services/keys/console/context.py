"""The console's context: what every page is rendered with and every change runs through.

One `Console` is built by the key service's composition root and put on the app's state;
routes receive it through the `console` dependency (services.keys.console.caller).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.keys.app import use_cases
from services.keys.app.context import KeysContext
from services.keys.console.backends import Backends
from services.keys.console.chart import moment
from services.keys.console.sessions import ConsoleSecrets, SessionStore, SignInThrottle, new_token
from services.keys.domain.recorded import Meta

if TYPE_CHECKING:
    from services.keys.console.caller import SignedIn

BASE = "/console"
KEYS_PAGE = f"{BASE}/settings/access-keys"
HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer, browsers send `Origin: null` on our
    # own form posts, which the CSRF check refuses. No console URL holds a secret.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
DONE_MESSAGES = {
    "created": "The key was created.",
    "updated": "The key was saved.",
    "disabled": "The key is disabled: every request with it is refused from now on.",
    "enabled": "The key is enabled again.",
    "revoked": "The key is revoked for good and its stored secret destroyed.",
}


@dataclass(frozen=True)
class ConsoleConfig:
    reveal_enabled: bool
    secure_cookies: bool


class Console:
    def __init__(
        self,
        ctx: KeysContext,
        store: SessionStore,
        secrets: ConsoleSecrets,
        backends: Backends,
        config: ConsoleConfig,
    ) -> None:
        self.ctx = ctx
        self.store = store
        self.secrets = secrets
        self.backends = backends
        self.config = config
        self.throttle = SignInThrottle()
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.filters["when"] = _when
        self.templates.env.filters["ago"] = _ago

    def page(
        self,
        request: Request,
        view: str,
        me: SignedIn | None,
        status_code: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        context = {
            "me": me,
            "csrf": self.secrets.csrf_token(me.session.token) if me else None,
            # A form that hands out a secret is carried out once per rendering of it.
            "once": new_token(),
            "base": BASE,
            "keys_page": KEYS_PAGE,
            **values,
        }
        response = self.templates.TemplateResponse(request, view, context, status_code=status_code)
        response.headers.update(SECURITY_HEADERS)
        return response

    def cookie(
        self, request: Request, response: Response, name: str, value: str, max_age: int
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=BASE,
            httponly=True,
            samesite="strict",
            secure=self.config.secure_cookies or request.url.scheme == "https",
        )

    async def change(
        self,
        request: Request,
        me: SignedIn,
        work: Callable[[Any, str, Meta], Awaitable[use_cases.Outcome]],
        retry: bool = True,
        once: use_cases.Once | None = None,
    ) -> use_cases.Outcome:
        """Run a change as the signed-in person, through the same use cases as the API;
        `once` makes a form that hands out a secret take effect once, however often it is
        sent (a refreshed page)."""
        meta, account = _meta(me, request), me.account_id
        return await use_cases.in_transaction(
            self.ctx.uow,
            lambda tx: use_cases.once(tx, once, account, meta, lambda: work(tx, account, meta)),
            retry_conflicts=retry,
        )


def back_to_key(key_id: uuid.UUID, done: str) -> RedirectResponse:
    """After a change: the key's page, saying what was done."""
    return RedirectResponse(f"{KEYS_PAGE}/{key_id}?done={done}", status_code=303)


def _meta(me: SignedIn, request: Request) -> Meta:
    return Meta(
        actor=me.principal.actor,
        occurred_at=datetime.now(UTC),
        correlation_id=request.scope.get("state", {}).get("correlation_id"),
    )


def _when(value: Any) -> str:
    if value is None:
        return "—"
    at = moment(value)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ago(value: Any) -> str:
    if value is None:
        return "Never"
    at = moment(value)
    seconds = (datetime.now(UTC) - at).total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"
