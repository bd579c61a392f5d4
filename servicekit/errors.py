"""The HTTP error body of INTERFACE.md, `{"error": {"code": ..., "message": ...}}`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from servicekit.logging import get_logger

log = get_logger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


_FASTAPI_UNPARSABLE_BODY = "There was an error parsing the body"
_LOCATIONS = ("body", "query", "path", "header", "cookie")
_DATABASE_UNAVAILABLE = (
    OSError,  # refused, reset, timed out: the server is down or restarting
    asyncpg.PostgresConnectionError,  # a pooled connection died with the server
    asyncpg.CannotConnectNowError,  # the server is starting or shutting down
    asyncpg.InterfaceError,  # "connection is closed"
    asyncpg.InternalClientError,  # a connection the server dropped mid-operation
)


def _field_path(loc: Any) -> list[Any]:
    """The field's path without where it came from: `limit`, not `query.limit`."""
    path = list(loc)
    return path[1:] if path and path[0] in _LOCATIONS else path


class ApiError(Exception):
    """An error a route raises on purpose: status, stable code, message for a person."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra or {}
        """More fields of the error body, for programs (e.g. the key a repeat names)."""


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    return JSONResponse({"error": body}, status_code=status)


def validation_error_body(errors: Sequence[Any]) -> dict[str, Any]:
    """The 422 body for pydantic errors; one field at fault gets its own code
    (`name_invalid`, ...), as clients branch on it. Inputs are never echoed."""
    details = [
        {
            "field": ".".join(str(p) for p in _field_path(e.get("loc", ()))),
            "problem": e.get("msg"),
        }
        for e in list(errors)[:20]
    ]
    # A header's name is spelt like `Idempotency-Key`; its code like a field's. A field
    # that is no name of ours (an unknown one, sent by the client) gets the general code.
    fields = {d["field"].split(".")[0].lower().replace("-", "_") for d in details}
    known = len(fields) == 1 and re.fullmatch(r"[a-z][a-z0-9_]{0,63}", next(iter(fields)))
    code = f"{fields.pop()}_invalid" if known else "invalid_request"
    return {"error": {"code": code, "message": "The request is not valid.", "details": details}}


_METHODS: Final = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route answers at this path (RFC 9110's Allow): Starlette names
    only those of the first route that matches the path, a resource's methods may be
    declared by several routes, and those of an included router sit behind it (so each
    method is asked of every route, as the router itself would)."""
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        response = error_response(exc.status, exc.code, exc.message, **exc.extra)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_error_body(exc.errors()), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 400 and message == _FASTAPI_UNPARSABLE_BODY:
            code, message = "malformed_body", "The body is not JSON in UTF-8."
        response = error_response(exc.status_code, code, message)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = _allowed_methods(request)
        return response

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        # A dependency that is down is not our bug: 503, as /ready says, so callers retry.
        log.warning("dependency_unavailable", path=request.url.path, error_type=type(exc).__name__)
        return error_response(503, "unavailable", "A dependency is unavailable; try again soon.")

    for kind in _DATABASE_UNAVAILABLE:
        app.add_exception_handler(kind, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, _DATABASE_UNAVAILABLE):  # raised in front of the router
            return await _unavailable(request, exc)  # (e.g. by a fast-path middleware)
        # Logged by type only: an exception's text could quote request content.
        log.error("unhandled_error", path=request.url.path, error_type=type(exc).__name__)
        return error_response(500, "internal", "Something went wrong on our side; it was logged.")
