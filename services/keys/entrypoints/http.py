"""HTTP routes of the key service (INTERFACE.md): keys, their history, whoami, verify."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from contracts import (
    SCOPE_KEYS_MANAGE,
    KeyAttributes,
    KeyPatch,
)
from contracts.base import UtcDatetime
from servicekit.errors import ApiError
from services.keys.adapters import event_store, queries
from services.keys.app import use_cases
from services.keys.app.context import KeysContext
from services.keys.app.unit_of_work import KeysTransaction
from services.keys.domain import errors
from services.keys.domain.key import AccessKey, replay
from services.keys.domain.recorded import Meta
from services.keys.domain.secret import NewSecret
from services.keys.entrypoints.auth import Principal, authenticate
from services.keys.entrypoints.schemas import (
    DisableBody,
    EventList,
    EventView,
    KeyList,
    KeyView,
    KeyWithSecret,
    ReasonBody,
    RevealedSecret,
    RotateBody,
    VerifyRequest,
    VerifyResponse,
    WhoAmI,
)
from services.keys.entrypoints.verify import verify_answer

T = TypeVar("T")

# Each domain error code, mapped once to an HTTP status.
STATUS_OF_CODE = {
    errors.KeyNotFound.code: 404,
    errors.KeyAlreadyExists.code: 409,
    errors.KeyRevoked.code: 409,
    errors.KeyExpired.code: 409,
    errors.KeyAlreadyDisabled.code: 409,
    errors.KeyAlreadyActive.code: 409,
    errors.NothingToChange.code: 409,
    errors.VersionConflict.code: 409,
    errors.ExpiryInPast.code: 422,
    errors.RevealDisabled.code: 403,
    errors.SecretUnavailable.code: 410,
    errors.InsufficientScope.code: 403,
    errors.AlreadyDone.code: 409,
    errors.IdempotencyKeyReused.code: 422,
}
MAX_VERSION = 2**31 - 1
Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Your id for this request (e.g. a UUID), printable ASCII: sent again with"
        " a retry, it makes sure the key is created (or rotated) once. A repeat answers 409"
        " already_done naming the key, since the secret is handed out once.",
    ),
]
Cursor = Annotated[
    str | None, Query(max_length=200, description="next_cursor of the previous page.")
]


def domain_error(error: errors.DomainError) -> ApiError:
    status = STATUS_OF_CODE.get(error.code, 400)
    return ApiError(status, error.code, error.message, extra=error.details)


def _if_match(value: str | None) -> int | None:
    """`If-Match: "v3"` (our ETag) or `3` pins the version an update expects."""
    if value is None:
        return None
    digits = value.strip().strip('"').removeprefix("W/").strip('"').lstrip("v")
    if not digits.isdigit():
        raise ApiError(400, "bad_request", 'If-Match takes the ETag of the key, e.g. "v3".')
    return int(digits)


def _encode_cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode("|".join(parts).encode()).decode()


def _decode_cursor(cursor: str, arity: int) -> list[str]:
    try:
        parts = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
    except (ValueError, UnicodeDecodeError):
        parts = []
    if len(parts) != arity:
        raise ApiError(400, "bad_cursor", "The cursor is not one this API issued.")
    return parts


def _encode_list_cursor(last: AccessKey) -> str:
    """Where the next page of an account's key list starts (newest first)."""
    return _encode_cursor(last.created_at.isoformat(), str(last.key_id))


def _decode_list_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    created, key_id = _decode_cursor(cursor, 2)
    try:
        at, after = datetime.fromisoformat(created), uuid.UUID(key_id)
    except ValueError:
        at, after = None, None
    # A time PostgreSQL cannot take (naive, or a year it overflows) is no cursor of ours.
    if at is None or after is None or at.tzinfo is None or not 2000 <= at.year <= 9000:
        raise ApiError(400, "bad_cursor", "The cursor is not one this API issued.")
    return at, after


async def key_list_page(
    pool: Any, account_id: str, limit: int, cursor: str | None, status: str | None
) -> KeyList:
    """One page of an account's keys, newest first, and where the next one starts."""
    after = _decode_list_cursor(cursor) if cursor else None
    rows = await queries.list_keys(pool, account_id, limit + 1, after, status)
    return KeyList(
        items=[KeyView.of(k, used) for k, used in rows[:limit]],
        next_cursor=_encode_list_cursor(rows[limit - 1][0]) if len(rows) > limit else None,
    )


def _secret(outcome: use_cases.Outcome) -> NewSecret:
    if outcome.secret is None:
        raise RuntimeError("this use case always returns the secret")
    return outcome.secret


def build_router(ctx: KeysContext) -> APIRouter:  # noqa: PLR0915 - one block per route
    router = APIRouter(prefix="/v1")

    async def manager(request: Request) -> Principal:
        return await authenticate(ctx, request, SCOPE_KEYS_MANAGE)

    def meta(principal: Principal, request: Request) -> Meta:
        return Meta(
            actor=principal.actor,
            occurred_at=datetime.now(UTC),
            correlation_id=request.scope.get("state", {}).get("correlation_id"),
        )

    async def run(work: Callable[[KeysTransaction], Awaitable[T]], retry: bool = True) -> T:
        try:
            return await use_cases.in_transaction(ctx.uow, work, retry_conflicts=retry)
        except errors.DomainError as error:
            raise domain_error(error) from None

    async def act(
        request: Request,
        work: Callable[[KeysTransaction, str, Meta], Awaitable[use_cases.Outcome]],
        retry: bool = True,
        grants: list[str] | None = None,
        once: use_cases.Once | None = None,
    ) -> use_cases.Outcome:
        """A manager's change to a key of its own account: authenticate, check that the
        scopes it would grant are its own, then run the use case with the caller's account
        and request metadata, at most once per request when `once` names it."""
        principal = await manager(request)
        if once is not None and len(request.headers.getlist("idempotency-key")) > 1:
            raise ApiError(400, "bad_request", "Send one Idempotency-Key header, not several.")
        if grants is not None:
            try:
                use_cases.check_grantable(principal.scopes, grants)
            except errors.DomainError as error:
                raise domain_error(error) from None
        account, request_meta = principal.account_id, meta(principal, request)
        return await run(
            lambda tx: use_cases.once(
                tx, once, account, request_meta, lambda: work(tx, account, request_meta)
            ),
            retry,
        )

    @router.post(
        "/keys",
        status_code=201,
        response_model=KeyWithSecret,
        tags=["keys"],
        summary="Create a key; the secret is in the answer",
    )
    async def create_key(
        body: KeyAttributes, request: Request, idempotency_key: IdempotencyKey = None
    ) -> KeyWithSecret:
        outcome = await act(
            request,
            lambda tx, account, m: use_cases.create(tx, ctx.tools, account, body, m),
            grants=body.scopes,
            once=use_cases.Once("CreateKey", "create", idempotency_key, body.model_dump_json()),
        )
        return KeyWithSecret(**KeyView.of(outcome.key).model_dump(), key=_secret(outcome).plaintext)

    @router.get(
        "/keys", response_model=KeyList, tags=["keys"], summary="The account's keys, newest first"
    )
    async def list_keys(
        request: Request,
        limit: Limit = 50,
        cursor: Cursor = None,
        status: Annotated[str | None, Query(pattern="^(active|disabled|revoked|expired)$")] = None,
    ) -> KeyList:
        principal = await manager(request)
        return await key_list_page(ctx.pool(), principal.account_id, limit, cursor, status)

    @router.get(
        "/keys/{key_id}",
        response_model=KeyView,
        tags=["keys"],
        summary="One key; with as_of, its state at that time, from its events",
    )
    async def get_key(
        key_id: uuid.UUID, request: Request, response: Response, as_of: UtcDatetime | None = None
    ) -> KeyView:
        principal = await manager(request)
        if as_of is not None:
            async with ctx.pool().acquire() as conn:
                events = await event_store.stream(conn, key_id)
            then = replay(e for e in events if e.occurred_at <= as_of)
            if then is None or then.account_id != principal.account_id:
                raise ApiError(404, "not_found", f"no key {key_id} in this account at {as_of}")
            return KeyView.of(then, at=as_of)
        found = await queries.get_key(ctx.pool(), principal.account_id, key_id)
        if found is None:
            raise ApiError(404, "not_found", f"no key {key_id} in this account")
        response.headers["ETag"] = f'"v{found[0].version}"'
        return KeyView.of(*found)

    @router.patch(
        "/keys/{key_id}",
        response_model=KeyView,
        tags=["keys"],
        summary="Rename, describe, re-scope; If-Match makes it a safe update",
    )
    async def update_key(
        key_id: uuid.UUID,
        body: KeyPatch,
        request: Request,
        if_match: Annotated[str | None, Header()] = None,
    ) -> KeyView:
        pinned = _if_match(if_match)
        outcome = await act(
            request,
            lambda tx, account, m: use_cases.update(tx, account, key_id, body, m, pinned),
            retry=pinned is None,
            grants=body.scopes,
        )
        return KeyView.of(outcome.key)

    @router.delete(
        "/keys/{key_id}",
        response_model=KeyView,
        tags=["keys"],
        summary="Revoke: refused from now on, and the stored secret is destroyed",
    )
    async def revoke_key(
        key_id: uuid.UUID,
        request: Request,
        reason: Annotated[str | None, Query(max_length=500)] = None,
    ) -> KeyView:
        outcome = await act(
            request, lambda tx, account, m: use_cases.revoke(tx, account, key_id, reason, m)
        )
        return KeyView.of(outcome.key)

    @router.post("/keys/{key_id}/disable", response_model=KeyView, tags=["keys"])
    async def disable_key(
        key_id: uuid.UUID, request: Request, body: DisableBody | None = None
    ) -> KeyView:
        reason = (body or DisableBody()).reason
        outcome = await act(
            request, lambda tx, account, m: use_cases.disable(tx, account, key_id, reason, m)
        )
        return KeyView.of(outcome.key)

    @router.post("/keys/{key_id}/enable", response_model=KeyView, tags=["keys"])
    async def enable_key(
        key_id: uuid.UUID, request: Request, body: ReasonBody | None = None
    ) -> KeyView:
        reason = (body or ReasonBody()).reason
        outcome = await act(
            request, lambda tx, account, m: use_cases.enable(tx, account, key_id, reason, m)
        )
        return KeyView.of(outcome.key)

    @router.post(
        "/keys/{key_id}/rotate",
        response_model=KeyWithSecret,
        tags=["keys"],
        summary="A new secret under the same key id; the old one works until the grace period ends",
    )
    async def rotate_key(
        key_id: uuid.UUID,
        request: Request,
        body: RotateBody | None = None,
        idempotency_key: IdempotencyKey = None,
    ) -> KeyWithSecret:
        grace = (body or RotateBody()).grace_period_seconds
        outcome = await act(
            request,
            lambda tx, account, m: use_cases.rotate(tx, ctx.tools, account, key_id, grace, m),
            once=use_cases.Once("RotateKey", f"rotate {key_id}", idempotency_key, str(grace)),
        )
        return KeyWithSecret(**KeyView.of(outcome.key).model_dump(), key=_secret(outcome).plaintext)

    @router.post(
        "/keys/{key_id}/reveal",
        response_model=RevealedSecret,
        tags=["keys"],
        summary="View the secret again (recorded as KeyRevealed)",
    )
    async def reveal_key(key_id: uuid.UUID, request: Request) -> RevealedSecret:
        outcome = await act(
            request, lambda tx, account, m: use_cases.reveal(tx, ctx.tools, account, key_id, m)
        )
        return RevealedSecret(
            id=key_id, key=_secret(outcome).plaintext, prefix=_secret(outcome).prefix
        )

    @router.get(
        "/keys/{key_id}/events",
        response_model=EventList,
        tags=["keys"],
        summary="The key's history, newest first, with who did what",
    )
    async def key_events(
        key_id: uuid.UUID, request: Request, limit: Limit = 50, cursor: Cursor = None
    ) -> EventList:
        principal = await manager(request)
        if await queries.get_key(ctx.pool(), principal.account_id, key_id) is None:
            raise ApiError(404, "not_found", f"no key {key_id} in this account")
        before = None
        if cursor:
            (version,) = _decode_cursor(cursor, 1)
            if not (version.isascii() and version.isdigit() and 1 <= int(version) <= MAX_VERSION):
                raise ApiError(400, "bad_cursor", "The cursor is not one this API issued.")
            before = int(version)
        async with ctx.pool().acquire() as conn:
            page = await event_store.stream_page(conn, key_id, limit + 1, before)
        items = [EventView.of(e) for e in page[:limit]]
        next_cursor = (
            _encode_cursor(str(page[limit - 1].stream_version)) if len(page) > limit else None
        )
        return EventList(items=items, next_cursor=next_cursor)

    @router.get(
        "/whoami",
        response_model=WhoAmI,
        tags=["identity"],
        summary="The bearer key's own id, account, environment and scopes",
    )
    async def whoami(request: Request) -> WhoAmI:
        principal = await authenticate(ctx, request, None)
        return WhoAmI(
            key_id=principal.key_id,
            account_id=principal.account_id,
            environment=principal.environment,
            scopes=list(principal.scopes),
        )

    @router.post(
        "/verify",
        response_model=VerifyResponse,
        tags=["verification"],
        summary="Is this key valid? For API gateways, on every request (scope keys:verify)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": VerifyRequest.model_json_schema()}},
            }
        },
    )
    async def verify(request: Request) -> Any:
        # Served by VerifyFastPath in front of the framework; this route documents it and
        # answers identically when the app runs without the fast path.
        client = request.client.host if request.client else None
        status, body, headers = await verify_answer(
            ctx,
            request.headers.get("authorization"),
            await request.body(),
            client,
            request.headers.get("user-agent"),
        )
        return JSONResponse(body, status_code=status, headers=headers)

    return router
