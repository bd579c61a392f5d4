"""Read-side queries behind the HTTP API: usage buckets of one key, and alerts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.usage.domain.requests import TOKENS_CAP

_SUMS = (
    "requests",
    "status_2xx",
    "status_3xx",
    "status_4xx",
    "status_5xx",
    "auth_failures",
    "tokens_in",
    "tokens_out",
)
_AGGREGATES = ", ".join(f"least(sum({c}), {TOKENS_CAP})::bigint AS {c}" for c in _SUMS)
"""A bucket's counters: sums of saturated rows saturate too (each row holds at most
TOKENS_CAP tokens, and the latency sums at most LATENCY_SUM_CAP, so a sum of a bucket's
rows stays inside its type)."""


async def key_owner(pool: Any, key_id: uuid.UUID) -> str | None:
    """The account of a key the service knows from its events or its usage."""
    owner: str | None = await pool.fetchval(
        "SELECT account_id FROM key_directory WHERE key_id = $1"
        " UNION ALL SELECT account_id FROM key_activity WHERE key_id = $1 LIMIT 1",
        key_id,
    )
    return owner


async def last_used_at(pool: Any, key_id: uuid.UUID) -> datetime | None:
    """The key's last use: the last request of the newest minute with a request that was not
    refused for the key (contracts.usage.REFUSED_STATUSES are the rollups' auth_failures),
    to the minute when that minute also holds refusals."""
    value: datetime | None = await pool.fetchval(
        "SELECT last_at FROM rollups WHERE key_id = $1 AND requests > auth_failures"
        " ORDER BY minute DESC LIMIT 1",
        key_id,
    )
    return value


async def usage_buckets(
    pool: Any,
    key_id: uuid.UUID,
    granularity: str,
    start: datetime,
    end: datetime,
    limit: int,
) -> list[dict[str, Any]]:
    """Buckets of `granularity` (minute, hour, day; UTC) with any usage in [start, end),
    newest first."""
    rows = await pool.fetch(
        "WITH b AS (SELECT date_trunc($2, minute, 'UTC') AS start, * FROM rollups"
        " WHERE key_id = $1 AND minute >= $3 AND minute < $4)"
        f" SELECT start, {_AGGREGATES}, sum(latency_sum_ms) AS latency_sum_ms,"
        " max(latency_max_ms) AS latency_max_ms, min(first_at) AS first_at,"
        " max(last_at) AS last_at,"
        " (SELECT count(DISTINCT n) FROM b AS b2, unnest(b2.networks) AS n"
        "  WHERE b2.start = b.start) AS distinct_networks"
        " FROM b GROUP BY start ORDER BY start DESC LIMIT $5",
        key_id,
        granularity,
        start,
        end,
        limit,
    )
    return [dict(row) for row in rows]


async def alerts(
    pool: Any,
    account_id: str,
    *,
    key_id: uuid.UUID | None,
    kind: str | None,
    severity: str | None,
    since: datetime | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[tuple[datetime, uuid.UUID, str]]:
    """(detected_at, alert_id, body) newest first; `before` is the last item already seen."""
    rows = await pool.fetch(
        "SELECT detected_at, alert_id, body::text FROM alerts WHERE account_id = $1"
        " AND ($2::uuid IS NULL OR key_id = $2) AND ($3::text IS NULL OR kind = $3)"
        " AND ($4::text IS NULL OR severity = $4)"
        " AND ($5::timestamptz IS NULL OR detected_at >= $5)"
        " AND ($6::timestamptz IS NULL OR (detected_at, alert_id) < ($6, $7::uuid))"
        " ORDER BY detected_at DESC, alert_id DESC LIMIT $8",
        account_id,
        key_id,
        kind,
        severity,
        since,
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )
    return [(r[0], r[1], r[2]) for r in rows]
