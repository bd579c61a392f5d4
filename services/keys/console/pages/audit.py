"""Audit log: the audit service's records of the account, filtered, a page at a time, and
the same records exported as CSV (streamed through, never buffered here)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.datastructures import QueryParams

from servicekit.errors import ApiError
from services.keys.console.backends import BackendError
from services.keys.console.caller import Caller, ConsoleContext
from services.keys.console.context import BASE
from services.keys.console.reads import shown
from services.keys.console.refusals import RefusalPages

router = APIRouter(include_in_schema=False, route_class=RefusalPages)

AUDIT_ACTIONS = (
    "key.created", "key.updated", "key.disabled", "key.enabled", "key.rotated",
    "key.revealed", "key.revoked", "key.expired", "key.reported_leaked", "command.rejected",
    "alert.raised",
)  # fmt: skip


@router.get(f"{BASE}/settings/audit")
async def audit_page(request: Request, console: ConsoleContext, me: Caller) -> Response:
    params = request.query_params
    filters = audit_filters(params)
    page, audit_error = await shown(
        console.backends.audit_events(
            me.session.access_key, limit=50, cursor=params.get("cursor"), **filters
        )
    )
    chosen = {k: params.get(k, "") for k in filters}
    return console.page(
        request, "audit.html", me, records=page["items"], audit_error=audit_error,
        next_cursor=page.get("next_cursor"), filters=chosen, actions=AUDIT_ACTIONS,
        query=urlencode({k: v for k, v in chosen.items() if v}), tab="audit",
    )  # fmt: skip


@router.get(f"{BASE}/settings/audit.csv")
async def audit_csv(request: Request, console: ConsoleContext, me: Caller) -> Response:
    filters = audit_filters(request.query_params)
    try:
        export = await console.backends.open_export(me.session.access_key, "csv", **filters)
    except BackendError as error:
        status = 404 if error.status == 404 else 502
        return console.page(
            request, "error.html", me, status, title="Audit log", message=str(error)
        )
    return _download(export, me.account_id)


def audit_filters(params: QueryParams) -> dict[str, Any]:
    """The filters of the page's query, as the audit service takes them."""
    key_id = params.get("key_id", "").strip()
    try:
        key = str(uuid.UUID(key_id)) if key_id else None
    except ValueError:
        raise ApiError(422, "key_id_invalid", "The key filter takes a key id (a UUID).") from None
    action = params.get("action") or None
    return {
        "key_id": key,
        "actor_id": (params.get("actor_id") or "").strip()[:200] or None,
        "action": action if action in AUDIT_ACTIONS else None,
        "since": _day(params.get("since"), "since"),
        "until": _day(params.get("until"), "until", next_day=True),
    }


def _day(value: str | None, name: str, next_day: bool = False) -> datetime | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        day = None
    if day is None or not 2000 <= day.year <= 9000:
        raise ApiError(422, f"{name}_invalid", f"'{name}' takes a date, e.g. 2026-11-26.")
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start + timedelta(days=1) if next_day else start


def _download(export: httpx.Response, account_id: str) -> StreamingResponse:
    """The audit service's export, passed through as the browser's download."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        export.aiter_bytes(),
        background=BackgroundTask(export.aclose),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="audit-{account_id}-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )
