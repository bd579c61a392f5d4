"""POST /v1/verify: asked by API gateways on every request, so it has a fast path.

`verify_answer` is the endpoint's logic, from raw header and body to status and body.
The FastAPI route (which documents it in OpenAPI) and `VerifyFastPath` both call it; the
fast path answers in front of the framework (routing, dependency injection, response
models and the general middlewares cost several times the verification itself).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts import SCOPE_KEYS_VERIFY, SCOPE_KEYS_VERIFY_ANY_ACCOUNT
from servicekit.errors import ApiError, validation_error_body
from servicekit.fast_http import Answerer, Asked, Reply
from servicekit.http import MAX_BODY_BYTES
from servicekit.metrics import HTTP_REQUESTS, HTTP_SECONDS
from services.keys.app.context import KeysContext
from services.keys.app.limits import reset_text, retry_after
from services.keys.app.verification import Verdict, admit
from services.keys.entrypoints.auth import (
    Principal,
    authenticate_header,
    authenticate_header_now,
)
from services.keys.entrypoints.schemas import VerifyRequest

PATH = "/v1/verify"
_NOT_FOUND = {"valid": False, "code": "not_found"}
_REFUSAL_STATUS = {
    "disabled": 401,
    "revoked": 401,
    "expired": 401,
    "ip_not_allowed": 403,
    "rate_limited": 429,
    "budget_exhausted": 429,
}
"""The status of the usage record each refusal of a known key leaves on usage.records."""

Answer = tuple[int, dict[str, Any], dict[str, str]]
"""Status, JSON body and extra headers of one verification request."""


async def verify_answer(
    ctx: KeysContext,
    authorization: str | None,
    raw_body: bytes,
    client_ip: str | None,
    user_agent: str | None,
) -> Answer:
    """(status, JSON body, extra headers) of one verification request."""
    try:
        caller = await authenticate_header(
            ctx, authorization, client_ip, user_agent, PATH, SCOPE_KEYS_VERIFY
        )
    except ApiError as error:
        return _refused(error)
    request = _request(raw_body)
    if isinstance(request, tuple):
        return request
    _, answer = await decide(ctx, caller, request, client_ip, user_agent=user_agent)
    return 200, answer, {}


def verify_answer_now(
    ctx: KeysContext,
    authorization: str | None,
    raw_body: bytes,
    client_ip: str | None,
    user_agent: str | None,
) -> Answer | None:
    """`verify_answer` when neither the caller's key nor the presented one needs a
    lookup (both in the verification cache, or refused on their face); None when one
    does. The same functions decide: only the waiting is left out."""
    try:
        caller = authenticate_header_now(
            ctx, authorization, client_ip, user_agent, PATH, SCOPE_KEYS_VERIFY
        )
    except ApiError as error:
        return _refused(error)
    if caller is None:
        return None
    request = _request(raw_body)
    if isinstance(request, tuple):
        return request
    verdict = ctx.verifier.cached(request.key)
    if verdict is None:
        return None
    _, answer = answer_for(ctx, caller, request, verdict, client_ip, user_agent=user_agent)
    return 200, answer, {}


def _refused(error: ApiError) -> Answer:
    body = {"error": {"code": error.code, "message": error.message}}
    return error.status, body, error.headers or {}


def _request(raw_body: bytes) -> VerifyRequest | Answer:
    """The request, or the 422 answer to a body the contract refuses."""
    try:
        return VerifyRequest.model_validate_json(raw_body)
    except ValidationError as exc:
        return 422, validation_error_body(exc.errors(include_input=False)), {}


async def decide(
    ctx: KeysContext,
    caller: Principal,
    request: VerifyRequest,
    client_ip: str | None,
    record_id: uuid.UUID | None = None,
    user_agent: str | None = None,
) -> tuple[Verdict, dict[str, Any]]:
    """The decision about one presented key and its answer body, for `/v1/verify` and
    forward auth alike; a refusal of a known key is reported on usage.records (as
    `record_id` when the gateway named its request). A canary is answered as an unknown
    key, its attempt reported all the same; `user_agent` (the HTTP caller's) stands in for
    a request that names none."""
    verdict = await ctx.verifier.verify(request.key)
    return answer_for(ctx, caller, request, verdict, client_ip, record_id, user_agent)


def answer_for(
    ctx: KeysContext,
    caller: Principal,
    request: VerifyRequest,
    verdict: Verdict,
    client_ip: str | None,
    record_id: uuid.UUID | None = None,
    user_agent: str | None = None,
) -> tuple[Verdict, dict[str, Any]]:
    """`decide`, once the presented key's `verdict` is known."""
    known = verdict.known
    if known is not None and known.canary:
        # Answered as an unknown key, here and by forward auth (nothing tells a canary
        # from a key that does not exist); the attempt goes out in the background, like
        # refusals, so usage raises canary_key_used.
        ctx.reporter.report(
            known,
            request.source_ip or client_ip,
            request.user_agent or user_agent,
            request.endpoint,
            401,
            request.model,
            record_id,
        )
        return Verdict("not_found"), dict(_NOT_FOUND)
    if known is None:
        return verdict, {"valid": False, "code": verdict.code}
    if known.account_id != caller.account_id and SCOPE_KEYS_VERIFY_ANY_ACCOUNT not in caller.scopes:
        # A key only ever sees its own account's data; the platform's gateways hold
        # keys:verify:any-account to verify every account's keys.
        return Verdict("not_found"), dict(_NOT_FOUND)
    # Status first, then the key's networks, then its limits (docs/limits.md).
    now = time.time()
    verdict = admit(verdict, ctx.limits, request.source_ip, now)
    # A valid key is not marked used here: the gateway's usage record of the request is
    # its use (docs/last-used.md); a verifier that caches would not ask on each request.
    refused_as = _REFUSAL_STATUS.get(verdict.code)
    if refused_as is not None:
        ctx.reporter.report(
            known,
            request.source_ip or client_ip,
            request.user_agent,
            request.endpoint,
            refused_as,
            request.model,
            record_id,
        )
    answer: dict[str, Any] = {
        "valid": verdict.valid,
        "code": verdict.code,
        "key_id": str(known.key_id),
        "account_id": known.account_id,
        "environment": known.environment,
        "scopes": list(known.scopes),
        "rate_limit_per_hour": known.rate_limit_per_hour,
        "allowed_cidrs": list(known.limits.cidrs),
        # Which secret matched: a gateway marks its usage record of a request made with a
        # rotated-out secret (secret: previous), so its grace can end once it is quiet.
        "secret": "previous" if known.previous else "current",
    }
    if known.valid_until is not None:
        answer["valid_until"] = known.valid_until.isoformat().replace("+00:00", "Z")
    admission = verdict.admission
    if admission is not None and admission.refused is not None:
        answer["limit_name"] = admission.limit_name
        answer["retry_after_seconds"] = retry_after(admission.reset_at, now)
        answer["reset_at"] = reset_text(admission.reset_at)
    elif verdict.valid:
        windows = admission.windows if admission is not None else ()
        answer["limits"] = {
            name: {"limit": allowed, "remaining": remaining, "reset_at": reset_text(end)}
            for name, allowed, remaining, end in windows
        }
    return verdict, answer


class VerifyFastPath:
    """Answers POST /v1/verify before the framework; everything else passes through.

    The key service serves it in front of the FastAPI app (see `bootstrap.asgi`), not as
    one of its middlewares: the framework's own layers (error middleware, telemetry, body
    limit, routing) cost about as much again as the verification. A request it cannot
    answer (the database down on a cache miss) goes to the app's documented route, whose
    error handlers answer it as for any other route (503 while a dependency is down)."""

    def __init__(self, app: ASGIApp, ctx: KeysContext) -> None:
        self.app = app
        self.ctx = ctx
        self._metrics = _Metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        authorization, user_agent = _caller(scope["headers"])
        body = await _read_body(receive)
        headers: dict[str, str]
        if body is None:
            status, payload, headers = (
                413,
                {
                    "error": {
                        "code": "payload_too_large",
                        "message": f"The body exceeds {MAX_BODY_BYTES} bytes.",
                    }
                },
                {},
            )
        else:
            client = scope.get("client")
            try:
                status, payload, headers = await verify_answer(
                    self.ctx, authorization, body, client[0] if client else None, user_agent
                )
            except Exception:
                # Nothing was sent yet: the documented route gets the same request, and
                # the framework's error handlers (and middlewares) answer what failed.
                await self.app(scope, _replay(body), send)
                return
        await send_json(send, status, payload, headers)
        self._metrics.count(status, started)


def verify_answerer(ctx: KeysContext) -> Answerer:
    """`POST /v1/verify` for the server's protocol (servicekit.fast_http): answered there
    when both keys are in the verification cache; otherwise (None) by `VerifyFastPath`."""
    metrics = _Metrics()

    def answer(asked: Asked) -> Reply | None:
        started = time.perf_counter()
        authorization, user_agent = _caller(asked.headers)
        answered = verify_answer_now(ctx, authorization, asked.body, asked.client, user_agent)
        if answered is None:
            return None
        status, payload, headers = answered
        metrics.count(status, started)
        return Reply(status, orjson.dumps(payload), tuple(headers.items()))

    return Answerer(frozenset({(b"POST", PATH.encode())}), answer)


class _Metrics:
    """The request count and time of /v1/verify, as the app's middleware keeps them for
    every other route; labels made once."""

    def __init__(self) -> None:
        self._requests = {
            s: HTTP_REQUESTS.labels(PATH, "POST", str(s)) for s in (200, 401, 403, 413, 422)
        }
        self._seconds = HTTP_SECONDS.labels(PATH, "POST")

    def count(self, status: int, started: float) -> None:
        counter = self._requests.get(status) or HTTP_REQUESTS.labels(PATH, "POST", str(status))
        counter.inc()
        self._seconds.observe(time.perf_counter() - started)


def _caller(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """The Authorization and User-Agent headers of a request's (lowercase) headers."""
    authorization = user_agent = None
    for name, value in headers:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"user-agent":
            user_agent = value.decode("latin-1")
    return authorization, user_agent


async def send_json(
    send: Send, status: int, payload: Any, headers: dict[str, str], head: bool = False
) -> None:
    """One JSON answer, written straight to the ASGI server (the fast paths' way out); to a
    HEAD request, its headers alone."""
    encoded = orjson.dumps(payload)
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(encoded)).encode()),
    ]
    raw_headers.extend((k.lower().encode(), v.encode()) for k, v in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": b"" if head else encoded})


def _replay(body: bytes) -> Receive:
    """A `receive` that hands over `body` (already read) once, then waits like a server."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop()
        return {"type": "http.disconnect"}

    return receive


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body, or None once it passes MAX_BODY_BYTES."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
