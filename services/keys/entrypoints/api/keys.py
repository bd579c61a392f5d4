"""`/v1/keys`: create a key, list them, read one (now or as it was), change, revoke."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Final

from fastapi import APIRouter, Header, Query, Response

from contracts import KeyAttributes, KeyPatch, Reason
from contracts.base import UtcDatetime
from servicekit.errors import ApiError
from servicekit.openapi import AUTHENTICATED, BAD_CURSOR, NOT_FOUND, problems, refusal
from services.keys.adapters import event_store, queries
from services.keys.app import use_cases
from services.keys.domain import errors
from services.keys.domain.key import replay
from services.keys.entrypoints.api.secrets import IdempotencyKey, with_secret
from services.keys.entrypoints.dependencies import ChangesFor, Context, Manager
from services.keys.entrypoints.errors import refusals
from services.keys.entrypoints.paging import (
    KEY_LIST_CURSOR,
    Limit,
    cursor,
    decode_list_cursor,
    key_list_page,
)
from services.keys.entrypoints.schemas import KeyList, KeyView, KeyWithSecret

router = APIRouter(prefix="/v1/keys", tags=["keys"])

ETAG: Final = {
    "ETag": {
        "description": 'The key\'s version, e.g. "v3": send it back in If-Match.',
        "schema": {"type": "string"},
    }
}
IF_MATCH = r'^(W/)?"v[1-9][0-9]{0,8}"$|^[1-9][0-9]{0,8}$'
STATE_CONFLICTS = (
    errors.KeyRevoked,
    errors.KeyExpired,
    errors.NothingToChange,
    errors.VersionConflict,
)


@router.post(
    "",
    status_code=201,
    summary="Create a key; the secret is in the answer",
    responses=problems(
        *AUTHENTICATED,
        *refusals(errors.ExpiryInPast, errors.AlreadyDone, errors.IdempotencyKeyReused),
        refusal(400, "Several Idempotency-Key headers.", "bad_request"),
    ),
)
async def create_key(
    body: KeyAttributes, changes: ChangesFor, idempotency_key: IdempotencyKey = None
) -> KeyWithSecret:
    tools = changes.ctx.tools
    outcome = await changes.make(
        lambda tx, account, m: use_cases.create(tx, tools, account, body, m),
        grants=body.scopes,
        once=use_cases.Once("CreateKey", "create", idempotency_key, body.model_dump_json()),
    )
    return with_secret(outcome)


@router.get(
    "",
    summary="The account's keys, newest first",
    responses=problems(*AUTHENTICATED, BAD_CURSOR),
)
async def list_keys(
    ctx: Context,
    principal: Manager,
    limit: Limit = 50,
    cursor: Annotated[str | None, cursor(KEY_LIST_CURSOR)] = None,
    status: Annotated[str | None, Query(pattern="^(active|disabled|revoked|expired)$")] = None,
) -> KeyList:
    if cursor is not None:
        decode_list_cursor(cursor)  # an empty one too is no cursor of ours
    return await key_list_page(ctx.pool(), principal.account_id, limit, cursor, status)


@router.get(
    "/{key_id}",
    summary="One key; with as_of, its state at that time, from its events",
    responses={**problems(*AUTHENTICATED, NOT_FOUND), 200: {"headers": ETAG}},
)
async def get_key(
    key_id: uuid.UUID,
    ctx: Context,
    principal: Manager,
    response: Response,
    as_of: UtcDatetime | None = None,
) -> KeyView:
    if as_of is not None:
        async with ctx.pool().acquire() as conn:
            events = await event_store.stream(conn, key_id)
        then = replay(e for e in events if e.occurred_at <= as_of)
        if then is None or then.account_id != principal.account_id:
            raise ApiError(404, "not_found", f"no key {key_id} in this account at {as_of}")
        return KeyView.of(then, at=as_of)
    found = await queries.get_key(ctx.pool(), principal.account_id, key_id)
    if found is None:
        raise ApiError(404, "not_found", f"no key {key_id} in this account")
    response.headers["ETag"] = f'"v{found[0].version}"'
    return KeyView.of(*found)


@router.patch(
    "/{key_id}",
    summary="Rename, describe, re-scope; If-Match makes it a safe update",
    responses=problems(*AUTHENTICATED, NOT_FOUND, *refusals(*STATE_CONFLICTS, errors.ExpiryInPast)),
)
async def update_key(
    key_id: uuid.UUID,
    body: KeyPatch,
    changes: ChangesFor,
    if_match: Annotated[
        str | None,
        Header(
            pattern=IF_MATCH,
            description='The ETag of the key as read (e.g. "v3"): a change since is a 409.',
        ),
    ] = None,
) -> KeyView:
    pinned = int(re.sub(r"\D", "", if_match)) if if_match else None
    outcome = await changes.make(
        lambda tx, account, m: use_cases.update(tx, account, key_id, body, m, pinned),
        retry=pinned is None,
        grants=body.scopes,
    )
    return KeyView.of(outcome.key)


@router.delete(
    "/{key_id}",
    summary="Revoke: refused from now on, and the stored secret is destroyed",
    responses=problems(*AUTHENTICATED, NOT_FOUND, *refusals(*STATE_CONFLICTS)),
)
async def revoke_key(
    key_id: uuid.UUID,
    changes: ChangesFor,
    reason: Annotated[Reason | None, Query(description="Why; kept in the audit log.")] = None,
) -> KeyView:
    outcome = await changes.make(
        lambda tx, account, m: use_cases.revoke(tx, account, key_id, reason, m)
    )
    return KeyView.of(outcome.key)
