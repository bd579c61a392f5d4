"""`/v1/keys/{id}/...`: disable, enable, rotate, reveal a key of the caller's account."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from servicekit.openapi import AUTHENTICATED, NOT_FOUND, problems, refusal
from services.keys.app import use_cases
from services.keys.domain import errors
from services.keys.entrypoints.api.secrets import IdempotencyKey, with_secret
from services.keys.entrypoints.dependencies import ChangesFor
from services.keys.entrypoints.errors import refusals
from services.keys.entrypoints.schemas import (
    DisableBody,
    KeyView,
    KeyWithSecret,
    ReasonBody,
    RevealedSecret,
    RotateBody,
)

router = APIRouter(prefix="/v1/keys/{key_id}", tags=["keys"])
CHANGE_REFUSED = (errors.KeyRevoked, errors.KeyExpired, errors.VersionConflict)


@router.post(
    "/disable",
    summary="Refuse the key from now on, until it is enabled again",
    responses=problems(
        *AUTHENTICATED, NOT_FOUND, *refusals(*CHANGE_REFUSED, errors.KeyAlreadyDisabled)
    ),
)
async def disable_key(
    key_id: uuid.UUID, changes: ChangesFor, body: DisableBody | None = None
) -> KeyView:
    reason = (body or DisableBody()).reason
    outcome = await changes.make(
        lambda tx, account, m: use_cases.disable(tx, account, key_id, reason, m)
    )
    return KeyView.of(outcome.key)


@router.post(
    "/enable",
    summary="Accept a disabled key again",
    responses=problems(
        *AUTHENTICATED, NOT_FOUND, *refusals(*CHANGE_REFUSED, errors.KeyAlreadyActive)
    ),
)
async def enable_key(
    key_id: uuid.UUID, changes: ChangesFor, body: ReasonBody | None = None
) -> KeyView:
    reason = (body or ReasonBody()).reason
    outcome = await changes.make(
        lambda tx, account, m: use_cases.enable(tx, account, key_id, reason, m)
    )
    return KeyView.of(outcome.key)


@router.post(
    "/rotate",
    summary="A new secret under the same key id; the old one works until the grace period ends",
    responses=problems(
        *AUTHENTICATED,
        NOT_FOUND,
        *refusals(
            *CHANGE_REFUSED,
            errors.AlreadyDone,
            errors.IdempotencyKeyReused,
            errors.GraceRequired,
        ),
        refusal(400, "Several Idempotency-Key headers.", "bad_request"),
    ),
)
async def rotate_key(
    key_id: uuid.UUID,
    changes: ChangesFor,
    body: RotateBody | None = None,
    idempotency_key: IdempotencyKey = None,
) -> KeyWithSecret:
    asked = body or RotateBody()
    grace, quiet = asked.grace_period_seconds, asked.end_grace_when_quiet_seconds
    tools = changes.ctx.tools
    outcome = await changes.make(
        lambda tx, account, m: use_cases.rotate(tx, tools, account, key_id, grace, m, quiet),
        once=use_cases.Once("RotateKey", f"rotate {key_id}", idempotency_key, asked.asks),
    )
    return with_secret(outcome)


@router.post(
    "/reveal",
    summary="View the secret again (recorded as KeyRevealed)",
    responses=problems(
        *AUTHENTICATED,
        NOT_FOUND,
        *refusals(*CHANGE_REFUSED, errors.RevealDisabled, errors.SecretUnavailable),
    ),
)
async def reveal_key(key_id: uuid.UUID, changes: ChangesFor) -> RevealedSecret:
    tools = changes.ctx.tools
    outcome = await changes.make(
        lambda tx, account, m: use_cases.reveal(tx, tools, account, key_id, m)
    )
    if outcome.secret is None:
        raise RuntimeError("reveal always returns the secret")
    return RevealedSecret(id=key_id, key=outcome.secret.plaintext, prefix=outcome.secret.prefix)
