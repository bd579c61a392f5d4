"""`GET /v1/audit/events`: the account's audit records, newest first: a page at a time, or
all of them as JSON lines or CSV."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal
from uuid import UUID

import orjson
from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator

from contracts.base import Text, TimeBound
from servicekit.errors import ApiError
from servicekit.openapi import AUTHENTICATED, BAD_CURSOR, NOT_FOUND, problems
from servicekit.paging import cursor_query
from services.audit.adapters import queries
from services.audit.app.context import AuditContext
from services.audit.domain.entries import ACTIONS
from services.audit.entrypoints import export
from services.audit.entrypoints.dependencies import Context, Reader
from services.audit.entrypoints.paging import (
    AUDIT_CURSOR,
    CURSOR_SHAPE,
    decode_cursor,
    encode_cursor,
)
from services.audit.entrypoints.schemas import CSV_COLUMNS, AuditPage, record_document

router = APIRouter(prefix="/v1/audit", tags=["audit"])

DEFAULT_PAGE: Final = 50
MAX_PAGE: Final = 200
MAX_EXPORT: Final = 10_000_000
Format = Literal["json", "jsonl", "csv"]
_EXPORT_MEDIA: Final = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
_ANSWERS: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "format=json: a page of records. jsonl, csv: every matching record.",
        "content": {
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "A record, as in a page, a line."}
            },
            "text/csv": {
                "schema": {
                    "type": "string",
                    "description": f"A header row ({', '.join(CSV_COLUMNS)}), a row a record.",
                }
            },
        },
        "headers": {
            "Content-Disposition": {
                "description": 'jsonl and csv: `attachment; filename="audit-<account>.<format>"`.',
                "schema": {"type": "string"},
            }
        },
    },
    **problems(*AUTHENTICATED, NOT_FOUND, BAD_CURSOR),
}


def _known_action(value: str) -> str:
    if value not in ACTIONS:
        raise ValueError(f"action is one of: {', '.join(ACTIONS)}.")
    return value


Action = Annotated[str, AfterValidator(_known_action)]


@router.get(
    "/events",
    response_model=AuditPage,
    summary="The account's audit records, newest first; or all of them as JSON lines or CSV",
    description=f"`format=json` (default) answers a page of `limit` records (default"
    f" {DEFAULT_PAGE}, at most {MAX_PAGE}: a larger limit answers pages of {MAX_PAGE}) with"
    " a `next_cursor`. `format=jsonl` and `format=csv` stream every matching record (up to"
    " `limit` if given), from `cursor` if given. In CSV, free text that starts like a"
    " spreadsheet formula gets a leading apostrophe.",
    responses=_ANSWERS,
)
async def list_events(
    ctx: Context,
    caller: Reader,
    key_id: UUID | None = None,
    actor_id: Annotated[Text | None, Query(min_length=1, max_length=200)] = None,
    action: Annotated[Action | None, Query(json_schema_extra={"enum": list(ACTIONS)})] = None,
    since: Annotated[TimeBound | None, Query(description="occurred_at >= since")] = None,
    until: Annotated[TimeBound | None, Query(description="occurred_at < until")] = None,
    limit: Annotated[int | None, Query(ge=1, le=MAX_EXPORT)] = None,
    cursor: Annotated[str | None, cursor_query(AUDIT_CURSOR, CURSOR_SHAPE)] = None,
    output: Annotated[Format, Query(alias="format")] = "json",
) -> Response:
    after = decode_cursor(cursor) if cursor is not None else None
    if key_id is not None and not await queries.key_in_account(
        ctx.pool(), caller.account_id, key_id
    ):
        # Another account's key answers as an unknown one does: 404, nothing of it.
        raise ApiError(404, "not_found", "No such key in this account's audit log.")
    filters = queries.Filters(caller.account_id, key_id, actor_id, action, since, until)
    if output == "json":
        return await _page(ctx, filters, after, min(limit or DEFAULT_PAGE, MAX_PAGE))
    return StreamingResponse(
        (export.jsonl if output == "jsonl" else export.csv_rows)(
            queries.export(ctx.pool(), filters, after, limit)
        ),
        media_type=_EXPORT_MEDIA[output],
        headers={
            "Content-Disposition": f'attachment; filename="audit-{caller.account_id}.{output}"'
        },
    )


async def _page(
    ctx: AuditContext, filters: queries.Filters, after: queries.Position | None, size: int
) -> Response:
    """A page of records, and the cursor of the next if there is one (orjson: a record's
    stored details go out as they are)."""
    rows = await queries.page(ctx.pool(), filters, after, size + 1)
    last = rows[size - 1] if len(rows) > size else None
    body = {
        "items": [record_document(r) for r in rows[:size]],
        "next_cursor": None
        if last is None
        else encode_cursor(queries.Position(last["occurred_at"], last["seq"])),
    }
    return Response(orjson.dumps(body), media_type="application/json")
