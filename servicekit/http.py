"""The HTTP face every service shares: /health, /ready, /metrics, /asyncapi, /docs, errors.

Also two small ASGI middlewares on every request: a body-size limit (413 before a byte of
an oversize body is read into memory) and request metrics with the correlation id bound
into the log context.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.errors import install_error_handlers
from servicekit.logging import bind_context, clear_context
from servicekit.metrics import HTTP_REQUESTS, HTTP_SECONDS
from servicekit.openapi import install_contract


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, Literal["ok", "down"]] = Field(description="Each dependency's state.")


ReadinessCheck = Callable[[], Awaitable[bool]]
MAX_BODY_BYTES = 64 * 1024


def create_app(
    title: str,
    description: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    readiness: dict[str, ReadinessCheck],
    asyncapi: Callable[[], dict[str, Any]],
    body_limits: Mapping[str, int] | None = None,
) -> FastAPI:
    """`body_limits`: a larger body limit than MAX_BODY_BYTES for the paths named."""
    app = FastAPI(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        # A path with a trailing slash that no operation has is a 404 with the error body,
        # not a 307 to the path without it (a status no OpenAPI document here names, sent
        # before authentication).
        redirect_slashes=False,
    )
    install_error_handlers(app)
    install_contract(app)

    @app.get("/health", tags=["operations"], summary="The process is alive")
    async def health() -> Health:
        return Health(status="ok")

    @app.get(
        "/ready",
        tags=["operations"],
        summary="Broker and database answer (503 otherwise)",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "A dependency is down."}},
    )
    async def ready() -> JSONResponse:
        checks = {name: await check() for name, check in readiness.items()}
        ok = all(checks.values())
        body = {
            "status": "ready" if ok else "unavailable",
            "checks": {k: "ok" if v else "down" for k, v in checks.items()},
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/asyncapi", tags=["operations"], summary="AsyncAPI document of the topics read and written"
    )
    async def asyncapi_document() -> Response:
        return Response(orjson.dumps(asyncapi()), media_type="application/json")

    app.add_middleware(RequestObservation)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES, per_path=body_limits)
    return app


class BodySizeLimit:
    """Answers 413 when a body is (or declares to be) larger than `max_bytes`."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, per_path: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.per_path.get(scope["path"], self.max_bytes)
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > max_bytes):
                await _too_large(send, max_bytes)
                return
        # Read the body first (at most `max_bytes` of it), so that a body without a
        # Content-Length is refused with 413 too: raised from inside the app, the refusal
        # would reach the client as FastAPI's 400 "error parsing the body".
        messages: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                await _too_large(send, max_bytes)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Send, limit: int) -> None:
    body = orjson.dumps(
        {"error": {"code": "payload_too_large", "message": f"The body exceeds {limit} bytes."}}
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestObservation:
    """Counts and times requests by route template (never by raw path: ids are not labels)
    and binds a correlation id (from `X-Correlation-ID` or new) into the log context."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation = next(
            (v.decode("latin-1")[:200] for k, v in scope["headers"] if k == b"x-correlation-id"),
            None,
        )
        correlation = correlation or str(uuid.uuid4())
        scope.setdefault("state", {})["correlation_id"] = correlation
        clear_context()
        bind_context(correlation_id=correlation)
        status = 500
        started = time.perf_counter()

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append(
                    (b"x-correlation-id", correlation.encode("latin-1"))
                )
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()
            HTTP_SECONDS.labels(route, scope["method"]).observe(time.perf_counter() - started)
