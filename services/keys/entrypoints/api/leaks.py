"""Leaked keys reported from outside: GitHub's secret-scanning partner program, and
anyone who found a key (`/v1/credentials/revoke`, after GitHub's own). Neither takes an
access key; both end in `ReportLeakedKey` (app/leaks.py). See docs/secret-scanning.md.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from contracts import Actor
from servicekit.errors import ApiError, validation_error_body
from servicekit.openapi import problems, refusal
from services.keys.adapters.github_keys import GitHubKeys
from services.keys.app.leaks import PublicReports, report_leak
from services.keys.console.sessions import SignInThrottle
from services.keys.entrypoints.dependencies import Context
from services.keys.entrypoints.schemas import (
    CredentialsRevokeAnswer,
    CredentialsRevokeRequest,
    GitHubSecretMatch,
    GitHubTokenFeedback,
)

router = APIRouter(prefix="/v1", tags=["leaked keys"])

GITHUB_SOURCE = "github"
GITHUB_ACTOR_ID = "github-secret-scanning"
PUBLIC_ACTOR_ID = "public-report"
KEY_ID_HEADER = "Github-Public-Key-Identifier"
SIGNATURE_HEADER = "Github-Public-Key-Signature"
MAX_GITHUB_MATCHES = 500
GITHUB_REPORT_PATH = "/v1/secret-scanning/github"
MAX_GITHUB_BODY_BYTES = 4 * 1024 * 1024
"""GitHub's batches are larger than the usual body limit; this one holds the longest
batch the schema allows (its fields cut to their maximum, in 4-byte characters)."""
RECEIVED = CredentialsRevokeAnswer(
    message="Thank you. Any InstaGen access key among these is taken out of use, and its"
    " owner is told."
)
_MATCHES: TypeAdapter[list[GitHubSecretMatch]] = TypeAdapter(list[GitHubSecretMatch])
_BAD_SIGNATURE = refusal(
    401, "The signature is missing or not GitHub's (nothing was changed).", "invalid_signature"
)
_SLOW_DOWN = refusal(
    429,
    "Too many reports from this address; retry after Retry-After seconds.",
    "rate_limited",
    Retry_After="Seconds to wait before the next report.",
)


@dataclass(frozen=True)
class LeakIntake:
    """What the two endpoints need beyond the service's context, built once."""

    github_keys: GitHubKeys
    public: PublicReports
    throttle: SignInThrottle
    """Per source address: each request counts, `limit` per minute."""


def leak_intake(request: Request) -> LeakIntake:
    intake: LeakIntake = request.app.state.leaks
    return intake


Intake = Annotated[LeakIntake, Depends(leak_intake)]


def _actor(actor_id: str, request: Request) -> Actor:
    host = request.client.host if request.client else None
    try:
        ip = str(ipaddress.ip_address(host or ""))
    except ValueError:
        ip = None
    agent = request.headers.get("user-agent")
    return Actor(type="service", id=actor_id, ip=ip, user_agent=agent[:500] if agent else None)


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": {"type": "string", "maxLength": 512},
    }


@router.post(
    GITHUB_REPORT_PATH.removeprefix("/v1"),
    response_model=list[GitHubTokenFeedback],
    summary="GitHub secret-scanning partner endpoint: leaked keys GitHub found",
    description="GitHub's documented format, signed by GitHub (ECDSA P-256, SHA-256 over the"
    " raw body; the keys from GitHub's meta/public_keys/secret_scanning, configured). Each"
    " token that is an InstaGen key is reported leaked (the environment's policy quarantines"
    " or revokes it); the answer is GitHub's feedback format, naming no account.",
    responses=problems(_BAD_SIGNATURE),
    openapi_extra={
        "parameters": [
            _header(KEY_ID_HEADER, "Which of GitHub's public keys signed the body."),
            _header(SIGNATURE_HEADER, "Base64 DER ECDSA signature of the raw body."),
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "maxItems": MAX_GITHUB_MATCHES,
                        "items": GitHubSecretMatch.model_json_schema(),
                    }
                }
            },
        },
    },
)
async def github_report(request: Request, ctx: Context, intake: Intake) -> Any:
    body = await request.body()
    signed = intake.github_keys.verify(
        request.headers.get(KEY_ID_HEADER), request.headers.get(SIGNATURE_HEADER), body
    )
    if not signed:
        raise ApiError(401, "invalid_signature", "The body is not signed by a GitHub key.")
    try:
        matches = _MATCHES.validate_json(body)
    except ValidationError as exc:
        return JSONResponse(validation_error_body(exc.errors(include_input=False)), 422)
    if len(matches) > MAX_GITHUB_MATCHES:
        raise ApiError(422, "invalid_request", f"At most {MAX_GITHUB_MATCHES} matches a request.")
    actor = _actor(GITHUB_ACTOR_ID, request)
    feedback = []
    for match in matches:
        known = await report_leak(ctx, match.token, GITHUB_SOURCE, match.url or None, actor)
        feedback.append(
            GitHubTokenFeedback(
                token_hash=hashlib.sha256(match.token.encode()).hexdigest(),
                token_type=match.type,
                label="true_positive" if known is not None else "false_positive",
            )
        )
    return feedback


@router.post(
    "/credentials/revoke",
    status_code=202,
    summary="Report keys you found (no authentication): each real one is taken out of use",
    description="Up to 1,000 strings. The answer is always the same 202, whatever they are:"
    " the candidates that pass the key checksum are reported after it, the others dropped.",
    responses=problems(_SLOW_DOWN),
)
async def credentials_revoke(
    request: Request, report: CredentialsRevokeRequest, intake: Intake
) -> CredentialsRevokeAnswer:
    address = request.client.host if request.client else None
    wait = intake.throttle.wait_seconds(address)
    if wait:
        raise ApiError(
            429,
            "rate_limited",
            "Too many reports from this address; try again later.",
            {"Retry-After": str(int(wait) + 1)},
        )
    intake.throttle.refused(address)  # counts the request, refused or not
    intake.public.accept(report.credentials, _actor(PUBLIC_ACTOR_ID, request))
    return RECEIVED
