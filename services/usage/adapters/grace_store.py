"""What the warnings ahead of deadlines read and keep (migration 012): each account's
expiry warning setting, the last use of each key's rotated-out secret, and the keys
whose expiry or grace end is near, from the key read model (`key_directory`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


async def record_previous_secret_uses(conn: Any, latest: Mapping[str, float]) -> None:
    """Move each key's old-secret last use forward (never back: replays change nothing)."""
    if not latest:
        return
    await conn.execute(
        "INSERT INTO previous_secret_uses AS p (key_id, last_used_at)"
        " SELECT k, to_timestamp(least(a, extract(epoch FROM now())))"
        " FROM unnest($1::uuid[], $2::float8[]) AS u(k, a)"
        " ON CONFLICT (key_id) DO UPDATE SET last_used_at = EXCLUDED.last_used_at"
        " WHERE p.last_used_at < EXCLUDED.last_used_at",
        list(latest),
        list(latest.values()),
    )


async def expiring_keys(
    pool: Any, now: float, default_days: int
) -> list[tuple[str, str, float, int]]:
    """Active or disabled keys expiring within their account's warning days (or the last
    day's): (key_id, account_id, expires_at, the account's days)."""
    rows = await pool.fetch(
        "SELECT d.key_id::text, d.account_id, extract(epoch FROM d.expires_at)::float8,"
        " coalesce(s.key_expiring_days, $2)"
        " FROM key_directory d LEFT JOIN alert_settings s USING (account_id)"
        " WHERE d.status IN ('active', 'disabled') AND d.expires_at > to_timestamp($1)"
        " AND d.expires_at <= to_timestamp($1)"
        "  + make_interval(days => greatest(coalesce(s.key_expiring_days, $2), 1))",
        now,
        default_days,
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def grace_ending_keys(
    pool: Any, now: float, within_seconds: float
) -> list[tuple[str, str, float, float, float | None]]:
    """Keys whose rotation's grace period ends within `within_seconds`: (key_id,
    account_id, grace_period_ends_at, rotated_at, the old secret's last use)."""
    rows = await pool.fetch(
        "SELECT d.key_id::text, d.account_id,"
        " extract(epoch FROM d.grace_period_ends_at)::float8,"
        " extract(epoch FROM d.rotated_at)::float8, extract(epoch FROM p.last_used_at)::float8"
        " FROM key_directory d LEFT JOIN previous_secret_uses p USING (key_id)"
        " WHERE d.status IN ('active', 'disabled') AND d.rotated_at IS NOT NULL"
        " AND d.grace_period_ends_at > to_timestamp($1)"
        " AND d.grace_period_ends_at <= to_timestamp($1 + $2)",
        now,
        within_seconds,
    )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


async def expiry_warning_days(pool: Any, account_id: str) -> int | None:
    value: int | None = await pool.fetchval(
        "SELECT key_expiring_days FROM alert_settings WHERE account_id = $1", account_id
    )
    return value


async def set_expiry_warning_days(pool: Any, account_id: str, days: int) -> None:
    await pool.execute(
        "INSERT INTO alert_settings (account_id, key_expiring_days) VALUES ($1, $2)"
        " ON CONFLICT (account_id) DO UPDATE SET key_expiring_days = EXCLUDED.key_expiring_days,"
        " updated_at = now()",
        account_id,
        days,
    )
