"""Who is calling: the bearer access key, verified like any other, and its scopes."""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass

from fastapi import Request

from contracts import Actor
from servicekit.errors import ApiError
from services.keys.app.context import KeysContext

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Principal:
    key_id: uuid.UUID
    account_id: str
    environment: str
    scopes: tuple[str, ...]
    actor: Actor


async def authenticate(ctx: KeysContext, request: Request, scope: str | None) -> Principal:
    header = request.headers.get("authorization", "")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "unauthenticated",
            "Send an access key as 'Authorization: Bearer <key>'.",
            _CHALLENGE,
        )
    verdict = await ctx.verifier.verify(token.strip())
    client_ip = request.client.host if request.client else None
    user_agent = request.headers.get("user-agent")
    if not verdict.valid or verdict.known is None:
        if verdict.known is not None:
            ctx.reporter.report(verdict.known, client_ip, user_agent, request.url.path)
        raise ApiError(
            401, "unauthenticated", f"The access key is not accepted ({verdict.code}).", _CHALLENGE
        )
    known = verdict.known
    if scope is not None and scope not in known.scopes:
        raise ApiError(403, "insufficient_scope", f"This key lacks the scope {scope}.")
    ctx.tracker.touch(known.key_id)
    actor = Actor(
        type="user",
        id=str(known.key_id),
        ip=_address(client_ip),
        user_agent=user_agent[:500] if user_agent else None,
    )
    return Principal(known.key_id, known.account_id, known.environment, known.scopes, actor)


def _address(host: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(host or ""))
    except ValueError:
        return None
