"""`GET /v1/usage/keys/{key_id}`: what a key did, per minute, hour or day."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

from fastapi import APIRouter, Query

from contracts.base import TimeBound
from servicekit.errors import ApiError
from servicekit.openapi import AUTHENTICATED, BAD_CURSOR, NOT_FOUND, problems
from servicekit.paging import cursor_query
from services.usage.adapters import reads
from services.usage.entrypoints.dependencies import Context, Reader
from services.usage.entrypoints.paging import (
    BUCKET_CURSOR,
    BUCKET_SHAPE,
    Limit,
    decode_bucket_cursor,
    encode_bucket_cursor,
)
from services.usage.entrypoints.schemas import (
    Granularity,
    KeyUsage,
    UsageBucket,
    UsageCounters,
    shifted,
)

router = APIRouter(prefix="/v1/usage", tags=["usage"])
DEFAULT_SPAN: Final = timedelta(hours=24)


@router.get(
    "/keys/{key_id}",
    response_model=KeyUsage,
    response_model_by_alias=True,
    summary="The key's usage per minute, hour or day",
    description="UTC buckets with usage in [from, to), newest first; by default the 24 hours"
    " before `to` (default: now). A window that ends before it starts holds no bucket.",
    responses=problems(*AUTHENTICATED, NOT_FOUND, BAD_CURSOR),
)
async def key_usage(
    key_id: uuid.UUID,
    ctx: Context,
    caller: Reader,
    from_: Annotated[TimeBound | None, Query(alias="from", description="inclusive")] = None,
    to: Annotated[TimeBound | None, Query(description="exclusive")] = None,
    granularity: Granularity = "hour",
    limit: Limit = 200,
    cursor: Annotated[str | None, cursor_query(BUCKET_CURSOR, BUCKET_SHAPE)] = None,
) -> KeyUsage:
    before = decode_bucket_cursor(cursor) if cursor is not None else None
    if await reads.key_owner(ctx.pool(), key_id) != caller.account_id:
        raise ApiError(404, "not_found", "No such key in this account.")
    end = to or datetime.now(UTC)
    start = from_ or shifted(end, -DEFAULT_SPAN)
    page_end = end if before is None else min(end, before)
    rows = await reads.usage_buckets(ctx.pool(), key_id, granularity, start, page_end, limit + 1)
    return KeyUsage(
        key_id=key_id,
        account_id=caller.account_id,
        granularity=granularity,
        from_=start,
        to=end,
        last_used_at=await reads.last_used_at(ctx.pool(), key_id),
        totals=UsageCounters(**UsageCounters.sums(rows[:limit])),
        items=[UsageBucket.of(r, granularity) for r in rows[:limit]],
        next_cursor=encode_bucket_cursor(rows[limit - 1]["start"]) if len(rows) > limit else None,
    )
