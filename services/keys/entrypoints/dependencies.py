"""What the key service's routes are given through FastAPI's `Depends`: the service's
context, the caller (a bearer key with the scope the route needs), and `Changes`, which
runs a use case for that caller in a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from contracts import SCOPE_KEYS_MANAGE
from servicekit.errors import ApiError
from services.keys.app import use_cases
from services.keys.app.context import KeysContext
from services.keys.app.unit_of_work import KeysTransaction
from services.keys.domain import errors
from services.keys.domain.recorded import Meta
from services.keys.entrypoints.auth import Principal, authenticate
from services.keys.entrypoints.errors import domain_error

T = TypeVar("T")
Work = Callable[[KeysTransaction, str, Meta], Awaitable[use_cases.Outcome]]

# Declares the bearer scheme in the OpenAPI document; `authenticate` reads the header.
bearer = HTTPBearer(auto_error=False, description="An access key: `Authorization: Bearer ig_...`")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def keys_context(request: Request) -> KeysContext:
    context: KeysContext = request.app.state.keys
    return context


Context = Annotated[KeysContext, Depends(keys_context)]


async def any_caller(request: Request, ctx: Context, _: Bearer) -> Principal:
    return await authenticate(ctx, request, None)


async def manager(request: Request, ctx: Context, _: Bearer) -> Principal:
    return await authenticate(ctx, request, SCOPE_KEYS_MANAGE)


Caller = Annotated[Principal, Depends(any_caller)]
Manager = Annotated[Principal, Depends(manager)]


async def run(ctx: KeysContext, work: Callable[[KeysTransaction], Awaitable[T]], retry: bool) -> T:
    """A use case in a transaction; a rule it breaks is answered as its HTTP refusal."""
    try:
        return await use_cases.in_transaction(ctx.uow, work, retry_conflicts=retry)
    except errors.DomainError as error:
        raise domain_error(error) from None


@dataclass(frozen=True)
class Changes:
    """A manager's changes to the keys of its own account, with the request's metadata."""

    ctx: KeysContext
    principal: Principal
    meta: Meta

    async def make(
        self,
        work: Work,
        *,
        retry: bool = True,
        grants: Sequence[str] | None = None,
        once: use_cases.Once | None = None,
    ) -> use_cases.Outcome:
        """Check that the scopes it would grant are the caller's own, then run the use
        case with the caller's account, at most once per request when `once` names it."""
        if grants is not None:
            try:
                use_cases.check_grantable(self.principal.scopes, grants)
            except errors.DomainError as error:
                raise domain_error(error) from None
        account, meta = self.principal.account_id, self.meta
        return await run(
            self.ctx,
            lambda tx: use_cases.once(tx, once, account, meta, lambda: work(tx, account, meta)),
            retry,
        )


def changes(request: Request, ctx: Context, principal: Manager) -> Changes:
    if len(request.headers.getlist("idempotency-key")) > 1:
        raise ApiError(400, "bad_request", "Send one Idempotency-Key header, not several.")
    meta = Meta(
        actor=principal.actor,
        occurred_at=datetime.now(UTC),
        correlation_id=request.scope.get("state", {}).get("correlation_id"),
    )
    return Changes(ctx, principal, meta)


ChangesFor = Annotated[Changes, Depends(changes)]
