"""`/v1/authorize`: forward auth for gateways (nginx, Envoy, Traefik), any method.

Served by `AuthorizeFastPath` in front of the framework; these routes document it (one
operation per method OpenAPI can name) and answer identically without the fast path.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader

from servicekit.openapi import problems, refusal
from services.keys.entrypoints.authorize import METHODS, READ_HEADERS, authorize_answer
from services.keys.entrypoints.dependencies import Context

router = APIRouter(prefix="/v1", tags=["verification"])

_IDENTITY = {
    "X-Key-Id": "The key's id.",
    "X-Account-Id": "The account that owns the key.",
    "X-Key-Environment": "The key's environment.",
    "X-Key-Scopes": "The key's scopes, comma-separated.",
    "X-RateLimit-Limit": "The tightest limit of the key (when it has limits).",
    "X-RateLimit-Remaining": "What remains of it after this request.",
    "X-RateLimit-Reset": "When its window ends, in Unix seconds.",
}
_REFUSALS = problems(
    refusal(
        401,
        "The client's key (or the gateway's X-Verifier-Key) is missing or not accepted.",
        "missing_key",
        "malformed",
        "not_found",
        "disabled",
        "revoked",
        "expired",
        "verifier_unauthenticated",
        WWW_Authenticate="Bearer",
        X_Error_Code="The error code, for gateways that pass no body on.",
    ),
    refusal(
        403,
        "The key may not be used from the client's network; or the gateway's key lacks"
        " keys:verify; or, with X-Auth-Limit-Status: 403, a limit refusal.",
        "ip_not_allowed",
        "verifier_insufficient_scope",
        "rate_limited",
        "budget_exhausted",
        X_Error_Code="The error code.",
        Retry_After="Seconds until a limit's window ends (limit refusals).",
    ),
    refusal(
        429,
        "The key is over a rate limit or its token budget.",
        "rate_limited",
        "budget_exhausted",
        Retry_After="Seconds until the window ends.",
        X_Error_Code="The error code.",
    ),
)
_ALLOWED = {
    "description": "The key may make the request: its identity in headers, and the decision"
    " as /v1/verify answers it in the body.",
    "headers": {
        name: {"description": text, "schema": {"type": "string"}}
        for name, text in _IDENTITY.items()
    },
}

Text = Annotated[str | None, Header()]
VERIFIER_KEY = APIKeyHeader(
    name="X-Verifier-Key",
    scheme_name="VerifierKey",
    description="The gateway's own access key (scope keys:verify).",
    auto_error=False,
)


async def authorize(
    request: Request,
    ctx: Context,
    # The client's key, the one judged (the gateway's own is the security scheme).
    authorization: Text = None,
    x_api_key: Text = None,
    _gateway: Annotated[str | None, Security(VERIFIER_KEY)] = None,
    x_forwarded_for: Text = None,
    x_real_ip: Text = None,
    x_original_uri: Text = None,
    x_forwarded_uri: Text = None,
    x_request_id: Text = None,
    x_auth_limit_status: Annotated[
        str | None, Header(description="403: answer limit refusals as 403 (nginx)")
    ] = None,
) -> Any:
    """Forward auth: may the client's key make the request the gateway is about to pass on?
    The gateway's own key goes in X-Verifier-Key (scope keys:verify); docs/gateways.md."""
    headers = {
        name: value
        for name, value in request.headers.items()
        if name.encode("latin-1") in READ_HEADERS
    }
    client = request.client.host if request.client else None
    status, body, out = await authorize_answer(ctx, headers, client)
    return JSONResponse(body, status_code=status, headers=out)


for method in METHODS:
    router.add_api_route(
        "/authorize",
        authorize,
        methods=[method],
        operation_id=f"authorize_{method.lower()}",
        summary=f"Forward auth for gateways ({method}; every method answers alike)",
        responses={200: _ALLOWED, **_REFUSALS},
    )
