"""The key read model (`key_directory`) in PostgreSQL, and the unused-key candidates.

The limit counter keeps a copy of its own (`limit_directory`, same columns): it reads the
key events in its own consumer group, often in another process, and a key whose limits
changed is re-evaluated by the process that stores the change (a directory written by
the ingest would hide the change from a counter that had not read it yet). It holds in
memory only the limits of the keys that have some (`iter_limits`), and reads the whole
row of a key when one of its events comes (`load_keys`)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any, Final, Literal

from services.usage.domain.keys import KeyInfo, shared_limit

_COLUMNS = (
    "key_id::text, account_id, name, environment, rate_limit_per_hour, status,"
    " extract(epoch FROM status_since)::float8, previous_status,"
    " extract(epoch FROM created_at)::float8, extract(epoch FROM expires_at)::float8, version,"
    " rate_limit_per_minute, rate_limit_per_day, token_budget, token_budget_period, canary,"
    " extract(epoch FROM rotated_at)::float8, extract(epoch FROM grace_period_ends_at)::float8"
)


def _info(row: Any) -> KeyInfo:
    """One string per distinct id, environment and status in the process (interned), one
    float for a creation time that is also the status's, one int per distinct limit."""
    key_id, account, name, environment, limit, status, since, previous, created, *rest = row
    return KeyInfo(
        sys.intern(key_id),
        sys.intern(account),
        name,
        environment and sys.intern(environment),
        shared_limit(limit),
        sys.intern(status),
        since,
        sys.intern(previous),
        since if created == since else created,
        *rest,
    )


Table = Literal["key_directory", "limit_directory"]
KEY_DIRECTORY: Final[Table] = "key_directory"
LIMIT_DIRECTORY: Final[Table] = "limit_directory"


async def load_all(pool: Any, table: Table = KEY_DIRECTORY) -> list[KeyInfo]:
    return [_info(row) for row in await pool.fetch(f"SELECT {_COLUMNS} FROM {table}")]


async def load_keys(conn: Any, key_ids: list[str], table: Table = KEY_DIRECTORY) -> list[KeyInfo]:
    """The stored keys among `key_ids`."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM {table} WHERE key_id = ANY($1::uuid[])", key_ids
    )
    return [_info(row) for row in rows]


async def horizon(conn: Any) -> int:
    """Where following the directory's changes starts: read before the directory is loaded,
    every row written after the load's snapshot has a `changed_xid` at or past it."""
    return int(await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text"))


async def changed_since(
    conn: Any, since: int, table: Table = KEY_DIRECTORY
) -> tuple[int, list[KeyInfo]]:
    """The rows written by transactions at or past `since` (the last call's horizon; some
    again, as transactions then running may still write), and the horizon for the next call:
    the oldest transaction still running now, so a row its writer commits later is found."""
    rows = await conn.fetch(
        "WITH now AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon)"
        f" SELECT now.horizon::text, {_COLUMNS} FROM now"
        f" LEFT JOIN {table} ON {table}.changed_xid >= $1::text::xid8",
        str(since),
    )
    return int(rows[0][0]), [_info(row[1:]) for row in rows if row[1] is not None]


LimitRow = tuple[str, str, int | None, int | None, int | None, int | None, str | None]
"""key_id, account_id, rate_limit_per_minute, rate_limit_per_hour, rate_limit_per_day,
token_budget, token_budget_period."""


async def iter_limits(conn: Any, chunk: int = 10_000) -> AsyncIterator[list[LimitRow]]:
    """The keys of `limit_directory` that have a limit, `chunk` rows at a time (a million
    rows fetched at once would be a few hundred MB for a moment, and part of it stays in the
    process's heap). `conn` must be in a transaction (a cursor)."""
    cursor = await conn.cursor(
        "SELECT key_id::text, account_id, rate_limit_per_minute, rate_limit_per_hour,"
        " rate_limit_per_day, token_budget, token_budget_period FROM limit_directory"
        " WHERE rate_limit_per_minute IS NOT NULL OR rate_limit_per_hour IS NOT NULL"
        " OR rate_limit_per_day IS NOT NULL OR token_budget IS NOT NULL"
    )
    while rows := await cursor.fetch(chunk):
        yield [tuple(row) for row in rows]


async def save_many(conn: Any, keys: list[KeyInfo], table: Table = KEY_DIRECTORY) -> None:
    """Upsert the keys; a stored row with a later version is kept (replays, races)."""
    if not keys:
        return
    await conn.execute(
        f"INSERT INTO {table} (key_id, account_id, name, environment, rate_limit_per_hour,"
        " status, status_since, previous_status, created_at, expires_at, version, updated_at,"
        " rate_limit_per_minute, rate_limit_per_day, token_budget, token_budget_period, canary,"
        " rotated_at, grace_period_ends_at)"
        " SELECT k, a, n, e, r, s, to_timestamp(ss), ps, to_timestamp(c), to_timestamp(x), v,"
        " now(), rm, rd, tb, tp, cn, to_timestamp(ra), to_timestamp(ge)"
        " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],"
        " $5::bigint[], $6::text[], $7::float8[], $8::text[], $9::float8[], $10::float8[],"
        " $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::text[], $16::boolean[],"
        " $17::float8[], $18::float8[])"
        " AS u(k, a, n, e, r, s, ss, ps, c, x, v, rm, rd, tb, tp, cn, ra, ge)"
        " ON CONFLICT (key_id) DO UPDATE SET account_id = EXCLUDED.account_id,"
        " name = EXCLUDED.name, environment = EXCLUDED.environment,"
        " rate_limit_per_hour = EXCLUDED.rate_limit_per_hour, status = EXCLUDED.status,"
        " status_since = EXCLUDED.status_since, previous_status = EXCLUDED.previous_status,"
        " created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at,"
        " version = EXCLUDED.version, updated_at = now(),"
        " rate_limit_per_minute = EXCLUDED.rate_limit_per_minute,"
        " rate_limit_per_day = EXCLUDED.rate_limit_per_day,"
        " token_budget = EXCLUDED.token_budget, token_budget_period = EXCLUDED.token_budget_period,"
        " canary = EXCLUDED.canary, rotated_at = EXCLUDED.rotated_at,"
        " grace_period_ends_at = EXCLUDED.grace_period_ends_at,"
        " changed_xid = pg_current_xact_id()"
        f" WHERE {table}.version < EXCLUDED.version",
        [k.key_id for k in keys],
        [k.account_id for k in keys],
        [k.name for k in keys],
        [k.environment for k in keys],
        [k.rate_limit_per_hour for k in keys],
        [k.status for k in keys],
        [k.status_since for k in keys],
        [k.previous_status for k in keys],
        [k.created_at for k in keys],
        [k.expires_at for k in keys],
        [k.version for k in keys],
        [k.rate_limit_per_minute for k in keys],
        [k.rate_limit_per_day for k in keys],
        [k.token_budget for k in keys],
        [k.token_budget_period for k in keys],
        [k.canary for k in keys],
        [k.rotated_at for k in keys],
        [k.grace_period_ends_at for k in keys],
    )


async def unused_candidates(pool: Any, idle_before: float) -> list[tuple[str, float, float | None]]:
    """Active keys created before `idle_before` and not used since: (key_id, created_at,
    last_used_at) in epoch seconds. A use is a request not refused for the key itself
    (contracts.usage.REFUSED_STATUSES, the rollups' auth_failures), as the keys service
    counts it: the latest is the last request of the newest minute with one (to the minute
    when that minute also holds refusals); only keys refused since are looked up again."""
    rows = await pool.fetch(
        "SELECT d.key_id::text, extract(epoch FROM d.created_at)::float8,"
        " extract(epoch FROM coalesce(u.last_at, CASE WHEN a.last_failure_at IS NULL"
        "  THEN a.last_used_at END))::float8"
        " FROM key_directory d LEFT JOIN key_activity a USING (key_id)"
        " LEFT JOIN LATERAL (SELECT r.last_at FROM rollups r WHERE r.key_id = d.key_id"
        "  AND r.requests > r.auth_failures AND a.last_failure_at IS NOT NULL"
        "  ORDER BY r.minute DESC LIMIT 1) u ON true"
        " WHERE d.status = 'active' AND d.created_at <= to_timestamp($1)"
        " AND (d.expires_at IS NULL OR d.expires_at > now())"
        " AND (a.last_used_at IS NULL OR a.last_used_at <= to_timestamp($1)"
        "  OR a.last_failure_at > to_timestamp($1))"
        " AND (u.last_at IS NULL OR u.last_at <= to_timestamp($1))",
        idle_before,
    )
    return [(r[0], r[1], r[2]) for r in rows]
