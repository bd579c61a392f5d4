"""Who is calling: the bearer access key, verified like any other, and its scopes."""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass

from fastapi import Request

from contracts import Actor
from servicekit.errors import ApiError
from services.keys.app.context import KeysContext
from services.keys.app.verification import Verdict

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Principal:
    key_id: uuid.UUID
    account_id: str
    environment: str
    scopes: tuple[str, ...]
    client_ip: str | None
    user_agent: str | None

    @property
    def actor(self) -> Actor:
        """Who acts, for the events a request appends (built only when one does)."""
        return Actor(
            type="user",
            id=str(self.key_id),
            ip=_address(self.client_ip),
            user_agent=self.user_agent[:500] if self.user_agent else None,
        )


async def authenticate(ctx: KeysContext, request: Request, scope: str | None) -> Principal:
    return await authenticate_header(
        ctx,
        request.headers.get("authorization"),
        request.client.host if request.client else None,
        request.headers.get("user-agent"),
        request.url.path,
        scope,
    )


async def authenticate_header(
    ctx: KeysContext,
    header: str | None,
    client_ip: str | None,
    user_agent: str | None,
    path: str,
    scope: str | None,
) -> Principal:
    verdict = await ctx.verifier.verify(bearer_token(header))
    return authorize(ctx, verdict, client_ip, user_agent, path, scope)


def authenticate_header_now(
    ctx: KeysContext,
    header: str | None,
    client_ip: str | None,
    user_agent: str | None,
    path: str,
    scope: str | None,
) -> Principal | None:
    """`authenticate_header` when the caller's key needs no lookup (the verification
    cache has it); None when it does."""
    verdict = ctx.verifier.cached(bearer_token(header))
    return None if verdict is None else authorize(ctx, verdict, client_ip, user_agent, path, scope)


def bearer_token(header: str | None) -> str:
    """The access key of an Authorization header; ApiError 401 for any other header."""
    kind, _, token = (header or "").partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "unauthenticated",
            "Send an access key as 'Authorization: Bearer <key>'.",
            _CHALLENGE,
        )
    return token.strip()


def authorize(
    ctx: KeysContext,
    verdict: Verdict,
    client_ip: str | None,
    user_agent: str | None,
    path: str,
    scope: str | None,
) -> Principal:
    """The caller whose key got `verdict`, if it is accepted and holds `scope`."""
    if not verdict.valid or verdict.known is None:
        if verdict.known is not None:
            ctx.reporter.report(verdict.known, client_ip, user_agent, path)
        raise ApiError(
            401, "unauthenticated", f"The access key is not accepted ({verdict.code}).", _CHALLENGE
        )
    known = verdict.known
    if scope is not None and scope not in known.scopes:
        raise ApiError(403, "insufficient_scope", f"This key lacks the scope {scope}.")
    ctx.tracker.touch(known.key_id, known.account_id)  # a use of the platform's own API
    return Principal(
        known.key_id, known.account_id, known.environment, known.scopes, client_ip, user_agent
    )


def _address(host: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(host or ""))
    except ValueError:
        return None
