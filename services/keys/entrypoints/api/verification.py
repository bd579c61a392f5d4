"""`POST /v1/verify`: is this key valid? For API gateways, on every request.

Served by `VerifyFastPath` in front of the framework; this route documents it and answers
identically when the app runs without the fast path.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from servicekit.openapi import AUTHENTICATED, problems
from services.keys.entrypoints.dependencies import Bearer, Context
from services.keys.entrypoints.schemas import VerifyRequest, VerifyResponse
from services.keys.entrypoints.verify import verify_answer

router = APIRouter(prefix="/v1", tags=["verification"])


@router.post(
    "/verify",
    response_model=VerifyResponse,
    summary="Is this key valid? For API gateways, on every request (scope keys:verify)",
    description=(
        "Checks in this order, the first that fails answering with `valid: false`: format"
        " (`malformed`), lookup (`not_found`), status (`revoked`, `expired`, `disabled`),"
        " network (`ip_not_allowed`: a key with `allowed_cidrs` and a `source_ip` outside"
        " them, or none), limits (`rate_limited`, `budget_exhausted`, with `limit_name`,"
        " `retry_after_seconds` and `reset_at`). A valid answer has `limits`: each limit of"
        " the key with what remains of its current window after this request."
    ),
    responses=problems(*AUTHENTICATED),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": VerifyRequest.model_json_schema()}},
        }
    },
)
async def verify(request: Request, ctx: Context, _: Bearer) -> Any:
    client = request.client.host if request.client else None
    status, body, headers = await verify_answer(
        ctx,
        request.headers.get("authorization"),
        await request.body(),
        client,
        request.headers.get("user-agent"),
    )
    return JSONResponse(body, status_code=status, headers=headers)
