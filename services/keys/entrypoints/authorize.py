"""`/v1/authorize`: forward auth for gateways (nginx `auth_request`, Envoy `ext_authz`,
Traefik `forwardAuth`), any method, headers in and headers out (docs/gateways.md).

It decides as `/v1/verify` does (`verify.decide`: the same cache and limit state) about
the key the client presented, and answers in the status a gateway passes on: 200 with the
key's identity in headers, or 401/403/429 with the JSON error. It reports each decision
about a known key on `usage.records`, with the gateway's request id as the record id, so
a gateway that publishes nothing still feeds limits, last use and every detector, and one
that does publish (with the same id) is counted once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from starlette.types import ASGIApp, Receive, Scope, Send

from contracts import SCOPE_KEYS_VERIFY
from contracts.usage import record_id_for
from servicekit.errors import ApiError
from servicekit.metrics import HTTP_REQUESTS, HTTP_SECONDS
from services.keys.app.context import KeysContext
from services.keys.entrypoints.auth import authenticate_header
from services.keys.entrypoints.schemas import VerifyRequest
from services.keys.entrypoints.verify import decide, send_json

PATH: Final = "/v1/authorize"
METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
"""The methods a gateway forwards (each declared in the OpenAPI document); TRACE and
CONNECT are refused with 405, as a gateway refuses them itself."""
READ_HEADERS: Final = frozenset(
    {
        b"authorization",
        b"x-api-key",
        b"x-verifier-key",
        b"x-forwarded-for",
        b"x-real-ip",
        b"x-original-uri",
        b"x-forwarded-uri",
        b"x-request-id",
        b"x-auth-limit-status",
        b"user-agent",
    }
)
STATUS_OF_CODE: Final = {
    "malformed": 401,
    "not_found": 401,
    "disabled": 401,
    "revoked": 401,
    "expired": 401,
    "ip_not_allowed": 403,
    "rate_limited": 429,
    "budget_exhausted": 429,
}
MESSAGES: Final = {
    "missing_key": "Send the access key as 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'.",
    "malformed": "The access key is not a well-formed InstaGen key.",
    "not_found": "The access key is not known.",
    "disabled": "The access key is disabled.",
    "revoked": "The access key is revoked.",
    "expired": "The access key has expired.",
    "ip_not_allowed": "The access key may not be used from this network.",
    "rate_limited": "The access key is over its rate limit; retry when its window ends.",
    "budget_exhausted": "The access key has spent its token budget; retry when it renews.",
}
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="instagen"'}
_MAX_TEXT: Final = 2048


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The client's key: `Authorization: Bearer <key>`, else `X-Api-Key: <key>`."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("x-api-key", "").strip() or None


def client_address(headers: Mapping[str, str]) -> str | None:
    """The client as the gateway saw it: the first `X-Forwarded-For` entry, else
    `X-Real-IP` (the gateway must set them itself, not pass on a client's claim)."""
    forwarded = headers.get("x-forwarded-for", "").split(",", 1)[0].strip()
    return forwarded or headers.get("x-real-ip", "").strip() or None


def original_path(headers: Mapping[str, str]) -> str:
    uri = headers.get("x-original-uri") or headers.get("x-forwarded-uri") or "/"
    return uri.split("?", 1)[0][:200] or "/"


async def authorize_answer(
    ctx: KeysContext, headers: Mapping[str, str], peer: str | None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers) of one forward-auth request."""
    try:
        gateway = await authenticate_header(
            ctx,
            f"Bearer {headers.get('x-verifier-key', '')}",
            peer,
            headers.get("user-agent"),
            PATH,
            SCOPE_KEYS_VERIFY,
        )
    except ApiError as error:
        code = f"verifier_{error.code}"
        message = (
            "Send the gateway's own access key (scope keys:verify) in X-Verifier-Key."
            if error.status == 401
            else "The gateway's key in X-Verifier-Key lacks the scope keys:verify."
        )
        return error.status, _error(code, message), {"X-Error-Code": code, **(error.headers or {})}
    secret = presented_key(headers)
    if secret is None:
        code = "missing_key"
        return 401, _error(code, MESSAGES[code]), {"X-Error-Code": code, **_CHALLENGE}
    request = VerifyRequest.model_construct(
        key=secret[:_MAX_TEXT],
        source_ip=client_address(headers),
        user_agent=(headers.get("user-agent") or "")[:500] or None,
        endpoint=original_path(headers),
        model=None,
    )
    record_id = record_id_for(headers.get("x-request-id", "")[:_MAX_TEXT] or None)
    verdict, answer = await decide(ctx, gateway, request, peer, record_id)
    if verdict.valid and verdict.known is not None:
        ctx.reporter.report(
            verdict.known,
            request.source_ip,
            request.user_agent,
            request.endpoint,
            200,
            None,
            record_id,
        )
        return 200, answer, _identity(answer)
    code = str(answer["code"])
    status = STATUS_OF_CODE.get(code, 401)
    out: dict[str, str] = {"X-Error-Code": code}
    if status == 401:
        out |= _CHALLENGE
    if status == 429:
        out["Retry-After"] = str(answer["retry_after_seconds"])
        if headers.get("x-auth-limit-status") == "403":  # nginx's auth_request: see module doc
            status = 403
    body = _error(code, MESSAGES.get(code, "The access key is refused."))
    if "retry_after_seconds" in answer:
        body["error"]["details"] = {
            "limit_name": answer.get("limit_name"),
            "retry_after_seconds": answer["retry_after_seconds"],
            "reset_at": answer["reset_at"],
        }
    return status, body, out


def _identity(answer: dict[str, Any]) -> dict[str, str]:
    """The headers a gateway passes upstream, and the tightest limit's for the client."""
    headers = {
        "X-Key-Id": str(answer["key_id"]),
        "X-Account-Id": str(answer["account_id"]),
        "X-Key-Environment": str(answer["environment"]),
        "X-Key-Scopes": ",".join(answer["scopes"]),
    }
    limits = answer.get("limits") or {}
    if limits:
        name = min(limits, key=lambda n: (limits[n]["remaining"], n))
        tightest = limits[name]
        headers["X-RateLimit-Limit"] = str(tightest["limit"])
        headers["X-RateLimit-Remaining"] = str(tightest["remaining"])
        reset = tightest["reset_at"]
        headers["X-RateLimit-Reset"] = str(_unix_seconds(reset)) if reset else ""
    return {k: v for k, v in headers.items() if v}


def _unix_seconds(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class AuthorizeFastPath:
    """Answers `/v1/authorize` (any method) before the framework, as `VerifyFastPath`
    answers `/v1/verify`: gateways ask on every request."""

    def __init__(self, app: ASGIApp, ctx: KeysContext) -> None:
        self.app = app
        self.ctx = ctx
        self._seconds = HTTP_SECONDS.labels(PATH, "ANY")
        self._requests = {
            s: HTTP_REQUESTS.labels(PATH, "ANY", str(s)) for s in (200, 401, 403, 429)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] not in METHODS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in READ_HEADERS
        }
        client = scope.get("client")
        status, payload, out = await authorize_answer(
            self.ctx, headers, client[0] if client else None
        )
        await send_json(send, status, payload, out, head=scope["method"] == "HEAD")
        counter = self._requests.get(status) or HTTP_REQUESTS.labels(PATH, "ANY", str(status))
        counter.inc()
        self._seconds.observe(time.perf_counter() - started)
