"""HTTP routes of the usage service (INTERFACE.md): a key's usage, and the alerts.

Callers are authenticated through the keys service's whoami (servicekit.callers) and
need the scope usage:read; they only ever see their own account's keys and alerts (a
key of another account answers 404, as an unknown one does).
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query

from contracts import SCOPE_USAGE_READ, Alert, AlertKind, Severity
from contracts.base import UtcDatetime
from servicekit.callers import Caller, CallerDirectory
from servicekit.errors import ApiError
from services.usage.adapters import reads
from services.usage.entrypoints.schemas import (
    BUCKET_LENGTH,
    AlertList,
    Granularity,
    KeyUsage,
    UsageBucket,
    UsageCounters,
)

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
Cursor = Annotated[
    str | None, Query(max_length=200, description="next_cursor of the previous page.")
]
DEFAULT_SPAN = timedelta(hours=24)


def _encode_cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode("|".join(parts).encode()).decode()


def _decode_cursor(cursor: str, arity: int) -> list[str]:
    try:
        parts = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
    except (ValueError, UnicodeDecodeError):
        parts = []
    if len(parts) != arity:
        raise _bad_cursor()
    return parts


def _bad_cursor() -> ApiError:
    return ApiError(400, "bad_cursor", "The cursor is not one this API issued.")


def _counters(rows: list[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(r["requests"] for r in rows)
    latency = sum(r["latency_sum_ms"] for r in rows)
    return {
        **{
            name: sum(r[name] for r in rows)
            for name in (
                "requests",
                "status_2xx",
                "status_3xx",
                "status_4xx",
                "status_5xx",
                "auth_failures",
                "tokens_in",
                "tokens_out",
            )
        },
        "latency_avg_ms": round(latency / requests, 3) if requests else None,
        "latency_max_ms": max((r["latency_max_ms"] for r in rows), default=None),
    }


def build_router(pool: Any, callers: CallerDirectory) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["usage"])

    async def reader(authorization: str | None) -> Caller:
        return await callers.authenticate(authorization, SCOPE_USAGE_READ)

    @router.get("/usage/keys/{key_id}", response_model=KeyUsage, response_model_by_alias=True)
    async def key_usage(
        key_id: uuid.UUID,
        authorization: Annotated[str | None, Header()] = None,
        from_: Annotated[UtcDatetime | None, Query(alias="from")] = None,
        to: UtcDatetime | None = None,
        granularity: Granularity = "hour",
        limit: Limit = 200,
        cursor: Cursor = None,
    ) -> KeyUsage:
        """The key's usage per minute, hour or day (UTC buckets with usage, newest first);
        by default the last 24 hours."""
        caller = await reader(authorization)
        if await reads.key_owner(pool(), key_id) != caller.account_id:
            raise ApiError(404, "not_found", "No such key in this account.")
        end = to or datetime.now(UTC)
        start = from_ or end - DEFAULT_SPAN
        if start >= end:
            raise ApiError(422, "from_invalid", "'from' must be before 'to'.")
        page_end = end
        if cursor is not None:
            try:
                page_end = min(end, datetime.fromisoformat(_decode_cursor(cursor, 1)[0]))
            except (ValueError, TypeError):
                raise ApiError(
                    400, "bad_cursor", "The cursor is not one this API issued."
                ) from None
        rows = await reads.usage_buckets(pool(), key_id, granularity, start, page_end, limit)
        items = [
            UsageBucket(
                start=r["start"],
                end=r["start"] + BUCKET_LENGTH[granularity],
                distinct_networks=r["distinct_networks"],
                first_at=r["first_at"],
                last_at=r["last_at"],
                **_counters([r]),
            )
            for r in rows
        ]
        next_cursor = _encode_cursor(rows[-1]["start"].isoformat()) if len(rows) == limit else None
        return KeyUsage(
            key_id=key_id,
            account_id=caller.account_id,
            granularity=granularity,
            from_=start,
            to=end,
            last_used_at=await reads.last_used_at(pool(), key_id),
            totals=UsageCounters(**_counters(rows)),
            items=items,
            next_cursor=next_cursor,
        )

    @router.get("/alerts", response_model=AlertList)
    async def list_alerts(
        authorization: Annotated[str | None, Header()] = None,
        key_id: uuid.UUID | None = None,
        kind: AlertKind | None = None,
        severity: Severity | None = None,
        since: UtcDatetime | None = None,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> AlertList:
        """The account's alerts, newest first."""
        caller = await reader(authorization)
        if key_id is not None and await reads.key_owner(pool(), key_id) != caller.account_id:
            raise ApiError(404, "not_found", "No such key in this account.")
        before = None
        if cursor is not None:
            at, alert_id = _decode_cursor(cursor, 2)
            try:
                before = (datetime.fromisoformat(at), uuid.UUID(alert_id))
            except ValueError:
                raise ApiError(
                    400, "bad_cursor", "The cursor is not one this API issued."
                ) from None
        rows = await reads.alerts(
            pool(),
            caller.account_id,
            key_id=key_id,
            kind=kind,
            severity=severity,
            since=since,
            before=before,
            limit=limit,
        )
        items = [Alert.model_validate(orjson.loads(body)) for _, _, body in rows]
        next_cursor = (
            _encode_cursor(rows[-1][0].isoformat(), str(rows[-1][1]))
            if len(rows) == limit
            else None
        )
        return AlertList(items=items, next_cursor=next_cursor)

    return router
