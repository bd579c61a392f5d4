"""The access-key console: Account Settings in the browser, served by the key service.

Server-rendered pages (Jinja2, autoescaped) with plain HTML forms, so every flow works
with the keyboard alone and without a script; one small script of our own adds the copy
button and the naming helpers. Nothing is fetched from elsewhere at run time, and the
Content-Security-Policy says so.

Changes go through the same use cases as the HTTP API, with the signed-in key as the
actor, so the events, the audit log and the usage service see a console action exactly
as they see an API call. Audit and usage data come from those services' own APIs, asked
with the signed-in person's key.
"""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.background import BackgroundTask

from contracts import (
    ALL_PLATFORM_SCOPES,
    PRODUCTION,
    SCOPE_KEYS_MANAGE,
    SCOPE_KEYS_VERIFY_ANY_ACCOUNT,
    AlertKind,
    KeyAttributes,
    KeyPatch,
    Severity,
)
from servicekit.errors import ApiError
from services.keys.adapters import event_store, queries
from services.keys.app import use_cases
from services.keys.app.context import KeysContext
from services.keys.console import naming
from services.keys.console.backends import BackendError, Backends
from services.keys.console.chart import RANGES, Chart, build_chart, moment
from services.keys.console.sessions import (
    SESSION_COOKIE,
    SESSION_LIFETIME,
    SIGN_IN_COOKIE,
    ConsoleSecrets,
    Session,
    SessionStore,
    SignInThrottle,
    new_token,
)
from services.keys.domain import errors
from services.keys.domain.recorded import Meta
from services.keys.entrypoints.auth import Principal, authenticate_header
from services.keys.entrypoints.http import STATUS_OF_CODE, key_list_page
from services.keys.entrypoints.schemas import EventView, KeyView

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
GRACE_CHOICES = (("0", "None: refuse the old secret at once"), ("3600", "1 hour"),
                 ("86400", "24 hours"), ("604800", "7 days"))  # fmt: skip
DONE_MESSAGES = {
    "created": "The key was created.",
    "updated": "The key was saved.",
    "disabled": "The key is disabled: every request with it is refused from now on.",
    "enabled": "The key is enabled again.",
    "revoked": "The key is revoked for good and its stored secret destroyed.",
}
SIGN_IN_NOTICES = {
    "signed-out": "You are signed out.",
    "session-ended": "Your session ended: the key you signed in with is no longer accepted.",
}
AUDIT_ACTIONS = (
    "key.created", "key.updated", "key.disabled", "key.enabled", "key.rotated",
    "key.revealed", "key.revoked", "key.expired", "command.rejected", "alert.raised",
)  # fmt: skip
ALERT_KINDS: tuple[str, ...] = get_args(AlertKind)
SEVERITIES: tuple[str, ...] = get_args(Severity)


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

    # -- pages and sessions ---------------------------------------------------------------

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

    async def signed_in(self, request: Request) -> SignedIn:
        """The session's person, re-checked against the key they signed in with."""
        back_to = KEYS_PAGE
        if request.method == "GET":  # a form's target is no page to come back to
            back_to = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        session = await self.store.find(request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise SignInRequired(back_to)
        try:
            principal = await self._authenticate(request, session.access_key)
        except ApiError:
            await self.store.close(session.token)
            raise SignInRequired(back_to, "session-ended") from None
        if principal.key_id != session.key_id:
            await self.store.close(session.token)
            raise SignInRequired(back_to)
        return SignedIn(session, principal)

    async def _authenticate(self, request: Request, access_key: str) -> Principal:
        return await authenticate_header(
            self.ctx,
            f"Bearer {access_key}",
            request.client.host if request.client else None,
            request.headers.get("user-agent"),
            request.url.path,
            SCOPE_KEYS_MANAGE,
        )

    async def form(self, request: Request, binding: str | None) -> dict[str, Any]:
        """The posted form, if it came from one of our own pages (CSRF token, Origin)."""
        origin = request.headers.get("origin")
        # Compare hosts only: behind a TLS-terminating proxy the scheme seen here is http.
        same_origin = origin is None or (
            origin != "null" and urlsplit(origin).netloc == request.headers.get("host", "")
        )
        posted = await request.form()
        values: dict[str, Any] = {}
        for name in posted:
            # Browsers send a textarea's line breaks as CRLF; the contracts keep plain \n.
            items = [v.replace("\r\n", "\n") for v in posted.getlist(name) if isinstance(v, str)]
            values[name] = items if len(items) > 1 else (items[0] if items else "")
        sent = values.pop("csrf_token", None)
        if not same_origin or not self.secrets.csrf_ok(
            binding, sent if isinstance(sent, str) else None
        ):
            raise ApiError(
                403, "csrf_failed", "This form has expired or did not come from this console."
            )
        return values

    def meta(self, me: SignedIn, request: Request) -> Meta:
        return Meta(
            actor=me.principal.actor,
            occurred_at=datetime.now(UTC),
            correlation_id=request.scope.get("state", {}).get("correlation_id"),
        )

    async def change(
        self,
        request: Request,
        me: SignedIn,
        work: Callable[[Any, str, Meta], Awaitable[use_cases.Outcome]],
        retry: bool = True,
        once: use_cases.Once | None = None,
    ) -> use_cases.Outcome:
        """Run a change as the signed-in person; `once` makes a form that hands out a
        secret take effect once, however often it is sent (a refreshed page)."""
        meta, account = self.meta(me, request), me.account_id
        return await use_cases.in_transaction(
            self.ctx.uow,
            lambda tx: use_cases.once(tx, once, account, meta, lambda: work(tx, account, meta)),
            retry_conflicts=retry,
        )

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

    async def view(
        self, request: Request, render: Callable[[SignedIn], Awaitable[Response]]
    ) -> Response:
        """A page for the signed-in person; what it refuses becomes a page, never a 500."""
        me = await self.signed_in(request)
        return await self._guarded(request, me, lambda: render(me))

    async def submit(
        self,
        request: Request,
        render: Callable[[SignedIn, dict[str, Any]], Awaitable[Response]],
    ) -> Response:
        """A form of the signed-in person's, checked against CSRF before anything else."""
        me = await self.signed_in(request)

        async def checked() -> Response:
            return await render(me, await self.form(request, me.session.token))

        return await self._guarded(request, me, checked)

    async def _guarded(
        self, request: Request, me: SignedIn, render: Callable[[], Awaitable[Response]]
    ) -> Response:
        try:
            return await render()
        except errors.DomainError as error:
            status = STATUS_OF_CODE.get(error.code, 400)
            if isinstance(error, errors.AlreadyDone):  # e.g. a page that was refreshed
                return self.page(
                    request, "error.html", me, status, title="Already done",
                    message=error.message, key_link=f"{KEYS_PAGE}/{error.key_id}",
                )  # fmt: skip
            return self.page(
                request, "error.html", me, status, title="Not done", message=error.message
            )
        except FormInvalid as invalid:
            message = "; ".join(f"{f}: {m}" for f, m in invalid.fields.items())
            return self.page(request, "error.html", me, 422, title="Not done", message=message)
        except ValidationError as invalid:  # e.g. a reason the contracts refuse
            message = "; ".join(f"{f}: {m}" for f, m in _field_errors(invalid).items())
            return self.page(request, "error.html", me, 422, title="Not done", message=message)
        except ApiError as error:
            return self.page(
                request, "error.html", me, error.status, title="Not done", message=error.message
            )

    # -- data -----------------------------------------------------------------------------

    async def key_or_404(self, me: SignedIn, key_id: uuid.UUID) -> KeyView:
        found = await queries.get_key(self.ctx.pool(), me.account_id, key_id)
        if found is None:
            raise ApiError(404, "not_found", f"No key {key_id} in this account.")
        return KeyView.of(*found)

    async def usage_chart(self, me: SignedIn, key_id: uuid.UUID, range_name: str) -> Chart:
        """The chart of the range (the key's last use is the key service's own value)."""
        span, _, granularity = RANGES[range_name]
        now = datetime.now(UTC)
        try:
            usage = await self.backends.key_usage(
                me.session.access_key, key_id, now - span - timedelta(hours=6), now, granularity
            )
        except BackendError as error:
            if error.status != 404:
                raise
            usage = {"items": []}  # not yet known to the usage service
        try:
            return build_chart(range_name, now, usage["items"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise BackendError(
                "The usage service answered with data the console cannot read."
            ) from None


def install(app: FastAPI, console: Console) -> None:
    """Mount the console's pages and assets on the key service's app."""
    app.include_router(build_router(console))
    app.mount(f"{BASE}/static", StaticFiles(directory=HERE / "static"), name="console-static")

    async def to_sign_in(request: Request, exc: Exception) -> Response:
        query = {"next": getattr(exc, "back_to", KEYS_PAGE)}
        if notice := getattr(exc, "notice", None):
            query["notice"] = notice
        return RedirectResponse(f"{BASE}/sign-in?{urlencode(query)}", status_code=303)

    app.add_exception_handler(SignInRequired, to_sign_in)
    api_handler = app.exception_handlers[RequestValidationError]

    async def malformed(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith(BASE + "/"):
            answer = api_handler(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        return console.page(
            request, "error.html", None, 404, title="Not found",
            message="There is no such page: a link or an address was not one this console made.",
        )  # fmt: skip

    app.add_exception_handler(RequestValidationError, malformed)


def build_router(console: Console) -> APIRouter:  # noqa: PLR0915 - one block per page
    router = APIRouter(include_in_schema=False)
    c = console

    @router.get("/")
    async def root() -> RedirectResponse:
        return RedirectResponse(KEYS_PAGE, status_code=303)

    @router.get(BASE)
    @router.get(f"{BASE}/")
    @router.get(f"{BASE}/settings")
    async def home() -> RedirectResponse:
        return RedirectResponse(KEYS_PAGE, status_code=303)

    # -- sign-in and sign-out -------------------------------------------------------------

    def sign_in_form(
        request: Request, next_page: str, status: int = 200, **shown: str | None
    ) -> Response:
        """The sign-in form, with a fresh nonce (cookie) its CSRF token is bound to."""
        nonce = new_token()
        response = c.page(
            request, "sign_in.html", None, status,
            sign_in_csrf=c.secrets.csrf_token(f"sign-in:{nonce}"), next=next_page, **shown,
        )  # fmt: skip
        c.cookie(request, response, SIGN_IN_COOKIE, nonce, max_age=3600)
        return response

    @router.get(f"{BASE}/sign-in")
    async def sign_in_page(
        request: Request, next: str = KEYS_PAGE, notice: str | None = None
    ) -> Response:
        return sign_in_form(request, _local(next), notice=SIGN_IN_NOTICES.get(notice or ""))

    @router.post(f"{BASE}/sign-in")
    async def sign_in(request: Request) -> Response:
        nonce = request.cookies.get(SIGN_IN_COOKIE)
        try:
            values = await c.form(request, f"sign-in:{nonce}" if nonce else None)
        except ApiError as refused:
            return c.page(
                request, "error.html", None, 403, title="Sign-in", message=refused.message
            )
        access_key = values.get("access_key", "")
        access_key = access_key.strip() if isinstance(access_key, str) else ""
        next_page = values.get("next", KEYS_PAGE)
        next_page = _local(next_page if isinstance(next_page, str) else KEYS_PAGE)

        def again(message: str, status: int) -> Response:
            return sign_in_form(request, next_page, status, error=message)

        if not access_key or len(access_key) > 512:
            return again("Paste an access key of this account.", 400)
        address = request.client.host if request.client else None
        if wait := c.throttle.wait_seconds(address):
            return again(
                f"Too many refused sign-ins from your address; try again in {int(wait) + 1} s.",
                429,
            )
        try:
            principal = await c._authenticate(request, access_key)
        except ApiError as refused:
            c.throttle.refused(address)
            return again(
                "That key cannot sign in: it lacks the scope keys:manage."
                if refused.code == "insufficient_scope"
                else "That access key is not accepted (unknown, disabled, revoked or expired).",
                refused.status,
            )
        await c.store.close(request.cookies.get(SESSION_COOKIE))  # no second live session
        token = await c.store.open(principal.key_id, principal.account_id, access_key)
        response = RedirectResponse(next_page, status_code=303)
        c.cookie(
            request, response, SESSION_COOKIE, token, max_age=int(SESSION_LIFETIME.total_seconds())
        )
        response.delete_cookie(SIGN_IN_COOKIE, path=BASE)
        return response

    @router.post(f"{BASE}/sign-out")
    async def sign_out(request: Request) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        try:
            await c.form(request, token)
        except ApiError as refused:
            return c.page(
                request, "error.html", None, 403, title="Sign-out", message=refused.message
            )
        await c.store.close(token)
        response = RedirectResponse(f"{BASE}/sign-in?notice=signed-out", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=BASE)
        return response

    # -- the keys -------------------------------------------------------------------------

    @router.get(KEYS_PAGE)
    async def list_page(
        request: Request, cursor: str | None = None, done: str | None = None
    ) -> Response:
        async def render(me: SignedIn) -> Response:
            listed = await key_list_page(c.ctx.pool(), me.account_id, 50, cursor, None)
            return c.page(
                request, "keys.html", me, keys=listed.items, more=listed.next_cursor,
                unused=_unused,
                notice=DONE_MESSAGES.get(done or ""), tab="keys",
            )  # fmt: skip

        return await c.view(request, render)

    def new_key_form(
        request: Request,
        me: SignedIn,
        form: dict[str, Any],
        field_errors: dict[str, str] | None = None,
    ) -> HTMLResponse:
        return c.page(
            request, "new_key.html", me, 422 if field_errors else 200,
            groups=naming.NAME_GROUPS, names=naming.all_names(),
            environments=naming.ENVIRONMENTS, expiry_choices=naming.EXPIRY_CHOICES,
            template=naming.DESCRIPTION_TEMPLATE, example=naming.DESCRIPTION_EXAMPLE,
            scopes=_offered_scopes(me),
            form=form, field_errors=field_errors or {}, tab="keys",
        )  # fmt: skip

    @router.get(f"{KEYS_PAGE}/new")
    async def new_key_page(request: Request) -> Response:
        me = await c.signed_in(request)
        return new_key_form(request, me, {"environment": PRODUCTION})

    @router.post(KEYS_PAGE)
    async def create_key(request: Request) -> Response:
        async def render(me: SignedIn, values: dict[str, Any]) -> Response:
            try:
                attributes = _attributes(values, _offered_scopes(me))
            except FormInvalid as invalid:
                return new_key_form(request, me, values, invalid.fields)
            # What the person sent, not the attributes: "expires in 30 days" is the same
            # request on a refresh, though its date has moved on.
            sent = json.dumps(values, sort_keys=True)
            outcome = await c.change(
                request,
                me,
                lambda tx, account, m: use_cases.create(tx, c.ctx.tools, account, attributes, m),
                once=_once(values, "CreateKey", "console create", sent),
            )
            return secret_page(request, me, outcome, "created")

        return await c.submit(request, render)

    def secret_page(
        request: Request, me: SignedIn, outcome: use_cases.Outcome, how: str
    ) -> HTMLResponse:
        if outcome.secret is None:
            raise RuntimeError("this use case always returns the secret")
        return c.page(
            request, "secret.html", me, 201 if how == "created" else 200,
            key=KeyView.of(outcome.key), secret=outcome.secret.plaintext, how=how, tab="keys",
        )  # fmt: skip

    @router.get(KEYS_PAGE + "/{key_id}")
    async def key_page(
        request: Request, key_id: uuid.UUID, range: str = "24h", done: str | None = None
    ) -> Response:
        async def render(me: SignedIn) -> Response:
            key = await c.key_or_404(me, key_id)
            chosen = range if range in RANGES else "24h"
            async with c.ctx.pool().acquire() as conn:
                history = [
                    EventView.of(e) for e in await event_store.stream_page(conn, key_id, 100, None)
                ]
            chart, usage_error = None, None
            try:
                chart = await c.usage_chart(me, key_id, chosen)
            except BackendError as error:
                usage_error = str(error)
            alerts, alerts_error = await _shown(
                c.backends.alerts(me.session.access_key, key_id=key_id, limit=20)
            )
            return c.page(
                request, "key.html", me, key=key, history=history, chart=chart,
                usage_error=usage_error, alerts=alerts["items"], alerts_error=alerts_error,
                ranges=list(RANGES), unused=_unused(key), grace_choices=GRACE_CHOICES,
                reveal_enabled=c.config.reveal_enabled, notice=DONE_MESSAGES.get(done or ""),
                tab="keys",
            )  # fmt: skip

        return await c.view(request, render)

    @router.post(KEYS_PAGE + "/{key_id}/edit")
    async def edit_key(request: Request, key_id: uuid.UUID) -> Response:
        async def render(me: SignedIn, values: dict[str, Any]) -> Response:
            patch = KeyPatch(
                name=_one(values, "name"), description=_one(values, "description") or None
            )
            pinned = _one(values, "version")
            if not (pinned.isascii() and pinned.isdigit() and 0 < int(pinned) < 2**31):
                raise ApiError(422, "invalid", "The form lost the key's version; reload the page.")
            version = int(pinned)
            await c.change(
                request,
                me,
                lambda tx, account, m: use_cases.update(tx, account, key_id, patch, m, version),
                retry=False,
            )
            return _back(key_id, "updated")

        return await c.submit(request, render)

    @router.post(KEYS_PAGE + "/{key_id}/disable")
    async def disable_key(request: Request, key_id: uuid.UUID) -> Response:
        return await _reasoned(request, key_id, "disabled")

    @router.post(KEYS_PAGE + "/{key_id}/enable")
    async def enable_key(request: Request, key_id: uuid.UUID) -> Response:
        return await _reasoned(request, key_id, "enabled")

    async def _reasoned(request: Request, key_id: uuid.UUID, action: str) -> Response:
        async def render(me: SignedIn, values: dict[str, Any]) -> Response:
            reason = _one(values, "reason")[:500]
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
            return _back(key_id, action)

        return await c.submit(request, render)

    @router.post(KEYS_PAGE + "/{key_id}/rotate")
    async def rotate_key(request: Request, key_id: uuid.UUID) -> Response:
        async def render(me: SignedIn, values: dict[str, Any]) -> Response:
            grace = _one(values, "grace_period_seconds") or "0"
            if grace not in {value for value, _ in GRACE_CHOICES}:
                raise ApiError(422, "invalid", "Choose one of the grace periods offered.")
            seconds, tools = int(grace), c.ctx.tools
            outcome = await c.change(
                request, me,
                lambda tx, account, m: use_cases.rotate(tx, tools, account, key_id, seconds, m),
                once=_once(values, "RotateKey", f"console rotate {key_id}", str(seconds)),
            )  # fmt: skip
            if key_id == me.session.key_id and outcome.secret is not None:
                await c.store.reseal(me.session, outcome.secret.plaintext)  # stay signed in
            return secret_page(request, me, outcome, "rotated")

        return await c.submit(request, render)

    @router.post(KEYS_PAGE + "/{key_id}/reveal")
    async def reveal_key(request: Request, key_id: uuid.UUID) -> Response:
        async def render(me: SignedIn, _: dict[str, Any]) -> Response:
            outcome = await c.change(
                request, me,
                lambda tx, account, m: use_cases.reveal(tx, c.ctx.tools, account, key_id, m),
            )  # fmt: skip
            return secret_page(request, me, outcome, "revealed")

        return await c.submit(request, render)

    @router.get(KEYS_PAGE + "/{key_id}/revoke")
    async def revoke_confirmation(request: Request, key_id: uuid.UUID) -> Response:
        async def render(me: SignedIn) -> Response:
            key = await c.key_or_404(me, key_id)
            return c.page(request, "revoke.html", me, key=key, tab="keys")

        return await c.view(request, render)

    @router.post(KEYS_PAGE + "/{key_id}/revoke")
    async def revoke_key(request: Request, key_id: uuid.UUID) -> Response:
        async def render(me: SignedIn, values: dict[str, Any]) -> Response:
            key = await c.key_or_404(me, key_id)
            if _one(values, "confirm_name") != key.name:
                return c.page(
                    request, "revoke.html", me, 422, key=key, tab="keys",
                    error="Type the key's name exactly to confirm.",
                )  # fmt: skip
            reason = _one(values, "reason")[:500] or None
            await c.change(
                request, me,
                lambda tx, account, m: use_cases.revoke(tx, account, key_id, reason, m),
            )  # fmt: skip
            return _back(key_id, "revoked")

        return await c.submit(request, render)

    # -- usage and alerts, audit -------------------------------------------------------------

    @router.get(f"{BASE}/settings/usage")
    async def usage_page(
        request: Request, kind: str | None = None, severity: str | None = None
    ) -> Response:
        async def render(me: SignedIn) -> Response:
            rows = await queries.list_keys(c.ctx.pool(), me.account_id, 500, None, "active")
            unused_keys = [view for view in (KeyView.of(*row) for row in rows) if _unused(view)]
            alerts, alerts_error = await _shown(
                c.backends.alerts(
                    me.session.access_key,
                    kind=kind if kind in ALERT_KINDS else None,
                    severity=severity if severity in SEVERITIES else None,
                    limit=100,
                )
            )
            return c.page(
                request, "usage.html", me, alerts=alerts["items"], alerts_error=alerts_error,
                unused_keys=unused_keys, kinds=ALERT_KINDS, kind=kind, severity=severity,
                severities=SEVERITIES,
                unused=_unused, unused_after_days=naming.UNUSED_AFTER_DAYS, tab="usage",
            )  # fmt: skip

        return await c.view(request, render)

    @router.get(f"{BASE}/settings/audit")
    async def audit_page(request: Request) -> Response:
        async def render(me: SignedIn) -> Response:
            filters = _audit_filters(request)
            page, audit_error = await _shown(
                c.backends.audit_events(
                    me.session.access_key, limit=50,
                    cursor=request.query_params.get("cursor"), **filters,
                )
            )  # fmt: skip
            shown = {k: request.query_params.get(k, "") for k in filters}
            return c.page(
                request, "audit.html", me, records=page["items"], audit_error=audit_error,
                next_cursor=page.get("next_cursor"), filters=shown, actions=AUDIT_ACTIONS,
                query=urlencode({k: v for k, v in shown.items() if v}), tab="audit",
            )  # fmt: skip

        return await c.view(request, render)

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

        return await c.view(request, render)

    return router


# -- helpers ------------------------------------------------------------------------------


async def _shown(read: Awaitable[dict[str, Any]]) -> tuple[dict[str, Any], str | None]:
    """A page of another service's data, or why it cannot be shown (the page still is).
    404 is an empty page: that service has not heard of the key yet."""
    try:
        return await read, None
    except BackendError as error:
        nothing: dict[str, Any] = {"items": [], "next_cursor": None}
        return nothing, None if error.status == 404 else str(error)


def _once(values: dict[str, Any], command_type: str, action: str, sent: str) -> use_cases.Once:
    """A form carried out once: its one-time field (absent from a form rendered before it
    existed) and what it says are the request, so a refreshed page is a repeat, while the
    same form changed (back, edit, send again) is a new request."""
    token = _one(values, "once")[:64]
    return use_cases.Once(command_type, action, f"{token}\n{sent}" if token else None, sent)


def _back(key_id: uuid.UUID, done: str) -> RedirectResponse:
    return RedirectResponse(f"{KEYS_PAGE}/{key_id}?done={done}", status_code=303)


def _local(target: str) -> str:
    """Only a page of this console is a place to go back to (no open redirect)."""
    if target.startswith(BASE + "/") and not target.startswith("//") and "\\" not in target:
        return target[:500]
    return KEYS_PAGE


def _unused(key: KeyView) -> str | None:
    """Why an active key counts as unused, or None."""
    if key.status != "active":
        return None
    if key.last_used_at is None:
        return "Never used"
    if datetime.now(UTC) - key.last_used_at > timedelta(days=naming.UNUSED_AFTER_DAYS):
        return f"Unused for {naming.UNUSED_AFTER_DAYS}+ days"
    return None


class FormInvalid(Exception):
    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(", ".join(fields))
        self.fields = fields


def _one(values: dict[str, Any], name: str) -> str:
    """A field that takes one value (sent twice, it is refused, not joined)."""
    value = values.get(name, "")
    if isinstance(value, list):
        raise FormInvalid({name: "Send this field once."})
    return str(value).strip()


def _offered_scopes(me: SignedIn) -> list[str]:
    """What a new key may be given here: the signed-in key's own platform scopes, but never
    a platform gateway's (an operator grants that one, with the CLI)."""
    held = set(me.principal.scopes) - {SCOPE_KEYS_VERIFY_ANY_ACCOUNT}
    return [scope for scope in ALL_PLATFORM_SCOPES if scope in held]


def _attributes(values: dict[str, Any], offered_scopes: list[str]) -> KeyAttributes:
    """The create form as KeyAttributes; FormInvalid names each field that is wrong."""
    rate = _one(values, "rate_limit_per_hour")
    days = _one(values, "expires_in_days")
    if days not in {value for value, _ in naming.EXPIRY_CHOICES}:
        raise FormInvalid({"expires_at": "Choose one of the expiry periods offered."})
    scopes = values.get("scopes", [])
    scopes = [scopes] if isinstance(scopes, str) else list(scopes)
    if not set(scopes) <= set(offered_scopes):
        raise FormInvalid({"scopes": "Choose among the scopes offered."})
    raw: dict[str, Any] = {
        "name": _one(values, "name"),
        "description": _one(values, "description") or None,
        "environment": _one(values, "environment") or PRODUCTION,
        "scopes": scopes,
        "rate_limit_per_hour": rate or None,
        "expires_at": datetime.now(UTC) + timedelta(days=int(days)) if days else None,
    }
    try:
        return KeyAttributes.model_validate(raw)
    except ValidationError as invalid:
        raise FormInvalid(_field_errors(invalid)) from None


def _field_errors(invalid: ValidationError) -> dict[str, str]:
    found: dict[str, str] = {}
    for error in invalid.errors():
        field = str(error["loc"][0]) if error["loc"] else "form"
        found.setdefault(field, error["msg"])
    return found


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
