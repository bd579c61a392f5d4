"""`/v1/keys/{id}/events`: a key's history, newest first, with who did what."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter

from servicekit.errors import ApiError
from servicekit.openapi import AUTHENTICATED, BAD_CURSOR, NOT_FOUND, problems
from services.keys.adapters import event_store, queries
from services.keys.entrypoints.dependencies import Context, Manager
from services.keys.entrypoints.paging import HISTORY_CURSOR, Limit, cursor, decode_history_cursor
from services.keys.entrypoints.schemas import EventList, EventView

router = APIRouter(prefix="/v1/keys/{key_id}", tags=["keys"])


@router.get(
    "/events",
    summary="The key's history, newest first, with who did what",
    responses=problems(*AUTHENTICATED, NOT_FOUND, BAD_CURSOR),
)
async def key_events(
    key_id: uuid.UUID,
    ctx: Context,
    principal: Manager,
    limit: Limit = 50,
    cursor: Annotated[str | None, cursor(HISTORY_CURSOR)] = None,
) -> EventList:
    before = decode_history_cursor(cursor) if cursor is not None else None
    if await queries.get_key(ctx.pool(), principal.account_id, key_id) is None:
        raise ApiError(404, "not_found", f"no key {key_id} in this account")
    async with ctx.pool().acquire() as conn:
        page = await event_store.stream_page(conn, key_id, limit + 1, before)
    return EventList(
        items=[EventView.of(e) for e in page[:limit]],
        next_cursor=str(page[limit - 1].stream_version) if len(page) > limit else None,
    )
