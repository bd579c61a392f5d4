"""HTTP routes of the audit service (INTERFACE.md): the records, and their verification.

Callers authenticate with an access key of the keys service that has the scope
`audit:read`; they see their own account's records only.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Final, Literal
from uuid import UUID

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from contracts import SCOPE_AUDIT_READ
from contracts.base import UtcDatetime
from servicekit.callers import Caller
from servicekit.errors import ApiError
from services.audit.adapters import queries
from services.audit.adapters.chain_reader import snapshot
from services.audit.app.context import AuditContext
from services.audit.app.verification import verify_chain
from services.audit.domain.entries import ACTIONS
from services.audit.entrypoints import export
from services.audit.entrypoints.schemas import AuditPage, VerifyReport, record_document

DEFAULT_PAGE: Final = 50
MAX_PAGE: Final = 200
_MEDIA: Final = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
Format = Literal["json", "jsonl", "csv"]


def encode_cursor(position: queries.Position) -> str:
    raw = f"{position.occurred_at.isoformat()}|{position.seq}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> queries.Position:
    try:
        when, seq = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return queries.Position(datetime.fromisoformat(when), int(seq))
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_cursor", "The cursor is not one this API issued.") from None


def build_router(ctx: AuditContext) -> APIRouter:
    router = APIRouter(prefix="/v1/audit", tags=["audit"])

    async def reader(request: Request) -> Caller:
        authorization = request.headers.get("authorization")
        return await ctx.callers.authenticate(authorization, SCOPE_AUDIT_READ)

    @router.get(
        "/events",
        response_model=AuditPage,
        summary="The account's audit records, newest first; or all of them as JSON lines or CSV",
        description="`format=json` (default) answers a page of `limit` (1..200, default 50)"
        " records with a `next_cursor`. `format=jsonl` and `format=csv` stream every matching"
        " record (up to `limit` if given), from `cursor` if given. In CSV, free text that"
        " starts like a spreadsheet formula gets a leading apostrophe.",
        responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
    )
    async def list_events(
        request: Request,
        key_id: UUID | None = None,
        actor_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        action: Annotated[str | None, Query(max_length=64)] = None,
        since: Annotated[UtcDatetime | None, Query(description="occurred_at >= since")] = None,
        until: Annotated[UtcDatetime | None, Query(description="occurred_at < until")] = None,
        limit: Annotated[int | None, Query(ge=1, le=10_000_000)] = None,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
        output: Annotated[Format, Query(alias="format")] = "json",
    ) -> Response:
        caller = await reader(request)
        if action is not None and action not in ACTIONS:
            raise ApiError(422, "action_invalid", f"action is one of: {', '.join(ACTIONS)}.")
        if key_id is not None and not await queries.key_in_account(
            ctx.pool(), caller.account_id, key_id
        ):
            # Another account's key answers as an unknown one does: 404, nothing of it.
            raise ApiError(404, "not_found", "No such key in this account's audit log.")
        filters = queries.Filters(caller.account_id, key_id, actor_id, action, since, until)
        after = decode_cursor(cursor) if cursor else None
        if output != "json":
            rows = queries.export(ctx.pool(), filters, after, limit)
            encode = export.jsonl if output == "jsonl" else export.csv_rows
            filename = f"audit-{caller.account_id}.{output}"
            return StreamingResponse(
                encode(rows),
                media_type=_MEDIA[output],
                headers={"Content-Disposition": f'attachment; filename="{filename}"'},
            )
        size = limit or DEFAULT_PAGE
        if size > MAX_PAGE:
            raise ApiError(422, "limit_invalid", f"A page holds at most {MAX_PAGE} records.")
        rows_found = await queries.page(ctx.pool(), filters, after, size + 1)
        next_cursor = None
        if len(rows_found) > size:
            last = rows_found[size - 1]
            next_cursor = encode_cursor(queries.Position(last["occurred_at"], last["seq"]))
        body = {
            "items": [record_document(r) for r in rows_found[:size]],
            "next_cursor": next_cursor,
        }
        return Response(orjson.dumps(body), media_type="application/json")

    @router.get(
        "/verify",
        response_model=VerifyReport,
        summary="Recompute the account's hash chain; name the first broken record, if any",
    )
    async def verify(request: Request) -> VerifyReport:
        caller = await reader(request)
        async with snapshot(ctx.pool()) as chains:
            verdict = await verify_chain(chains, ctx.key, caller.account_id)
        return VerifyReport.of(verdict)

    return router
