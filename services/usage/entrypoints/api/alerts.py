"""`GET /v1/alerts`: the account's alerts on unusual key activity, newest first."""

from __future__ import annotations

import uuid
from typing import Annotated

import orjson
from fastapi import APIRouter

from contracts import Alert, AlertKind, Severity
from contracts.base import TimeBound
from servicekit.errors import ApiError
from servicekit.openapi import AUTHENTICATED, BAD_CURSOR, NOT_FOUND, problems
from servicekit.paging import cursor_query
from services.usage.adapters import reads
from services.usage.entrypoints.dependencies import Context, Reader
from services.usage.entrypoints.paging import (
    ALERT_CURSOR,
    ALERT_SHAPE,
    Limit,
    decode_alert_cursor,
    encode_alert_cursor,
)
from services.usage.entrypoints.schemas import AlertList

router = APIRouter(prefix="/v1", tags=["usage"])


@router.get(
    "/alerts",
    response_model=AlertList,
    summary="The account's alerts, newest first",
    responses=problems(*AUTHENTICATED, NOT_FOUND, BAD_CURSOR),
)
async def list_alerts(
    ctx: Context,
    caller: Reader,
    key_id: uuid.UUID | None = None,
    kind: AlertKind | None = None,
    severity: Severity | None = None,
    since: TimeBound | None = None,
    limit: Limit = 100,
    cursor: Annotated[str | None, cursor_query(ALERT_CURSOR, ALERT_SHAPE)] = None,
) -> AlertList:
    before = decode_alert_cursor(cursor) if cursor is not None else None
    if key_id is not None and await reads.key_owner(ctx.pool(), key_id) != caller.account_id:
        raise ApiError(404, "not_found", "No such key in this account.")
    rows = await reads.alerts(
        ctx.pool(),
        caller.account_id,
        key_id=key_id,
        kind=kind,
        severity=severity,
        since=since,
        before=before,
        limit=limit + 1,
    )
    last = rows[limit - 1] if len(rows) > limit else None
    return AlertList(
        items=[Alert.model_validate(orjson.loads(body)) for _, _, body in rows[:limit]],
        next_cursor=None if last is None else encode_alert_cursor(last[0], last[1]),
    )
