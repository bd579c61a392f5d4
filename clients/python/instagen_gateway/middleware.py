"""``GatewayMiddleware``: the Verifier and the UsageReporter in front of any ASGI app.

A request without a valid key is answered here (401, 403, 429 with ``Retry-After``, or 503
when keys cannot be verified), with the platform's JSON error body. A request let in
reaches the app with the verdict in ``scope["state"]["instagen"]`` (Starlette:
``request.state.instagen``) and is reported on ``usage.records`` when its response ends;
the app may put ``{"tokens_in", "tokens_out", "model"}`` in
``scope["state"]["instagen_usage"]`` for the record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from instagen_gateway.reporter import UsageReporter
from instagen_gateway.verdict import Verdict
from instagen_gateway.verifier import Verifier

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def presented_key(headers: dict[str, str]) -> str | None:
    """The client's key: ``Authorization: Bearer <key>`` or ``X-Api-Key: <key>``."""
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("x-api-key", "").strip() or None


class GatewayMiddleware:
    """Verify every HTTP request's key before ``app`` sees it; report what ``app`` served."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: Verifier,
        reporter: UsageReporter | None = None,
        exempt_paths: tuple[str, ...] = ("/health",),
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.reporter = reporter
        self.exempt_paths = exempt_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client")
        source_ip = client[0] if client else "0.0.0.0"  # noqa: S104 - an unknown client
        secret = presented_key(headers)
        if secret is None:
            await _refuse(send, Verdict("not_found"), "missing_key")
            return
        verdict = await self.verifier.verify(
            secret,
            source_ip=source_ip,
            user_agent=headers.get("user-agent"),
            endpoint=scope["path"],
        )
        if not verdict.valid:
            await _refuse(send, verdict)
            return
        scope.setdefault("state", {})["instagen"] = verdict
        status = 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            if self.reporter is not None and verdict.key_id and verdict.account_id:
                used = scope["state"].get("instagen_usage") or {}
                self.reporter.report(
                    key_id=verdict.key_id,
                    account_id=verdict.account_id,
                    source_ip=source_ip,
                    endpoint=scope["path"],
                    status_code=status,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    request_id=headers.get("x-request-id"),
                    tokens_in=int(used.get("tokens_in", 0)),
                    tokens_out=int(used.get("tokens_out", 0)),
                    user_agent=headers.get("user-agent"),
                    model=used.get("model"),
                    secret=verdict.secret,
                )


async def _refuse(send: Send, verdict: Verdict, code: str | None = None) -> None:
    body = verdict.error_body()
    if code == "missing_key":
        body = {
            "error": {"code": "missing_key", "message": "Send your access key as a Bearer token."}
        }
    headers = [(b"content-type", b"application/json")]
    if verdict.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="instagen"'))
    if verdict.retry_after_seconds is not None:
        headers.append((b"retry-after", str(verdict.retry_after_seconds).encode()))
    await send({"type": "http.response.start", "status": verdict.status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
