"""Read-side queries over the read models (no events folded here: that is the point)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from contracts import TokenBudget
from services.keys.app.limits import KeyLimits
from services.keys.app.verification import KnownSecret
from services.keys.domain.key import AccessKey
from services.keys.domain.leaks import LeakReport

_LIMIT_COLUMNS = (
    "k.rate_limit_per_minute, k.rate_limit_per_day, k.token_budget_tokens,"
    " k.token_budget_period, k.allowed_cidrs"
)
_KEY_COLUMNS = (
    "k.key_id, k.account_id, k.name, k.description, k.environment, k.scopes,"
    " k.rate_limit_per_hour, k.expires_at, k.prefix, k.status, k.disabled_reason,"
    " k.grace_period_ends_at, k.created_at, k.updated_at, k.version, u.last_used_at,"
    " k.canary, k.leak_source, k.leak_url, k.leak_action, k.leak_reported_at,"
    " k.rotated_at, k.previous_prefix, k.end_grace_when_quiet_seconds,"
    f" {_LIMIT_COLUMNS}"
)


def key_from_row(row: Any) -> AccessKey:
    return AccessKey(
        key_id=row["key_id"],
        account_id=row["account_id"],
        name=row["name"],
        description=row["description"],
        environment=row["environment"],
        scopes=tuple(row["scopes"]),
        rate_limit_per_hour=row["rate_limit_per_hour"],
        expires_at=row["expires_at"],
        prefix=row["prefix"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        secret_hash=None,
        grace_period_ends_at=row["grace_period_ends_at"],
        disabled_reason=row["disabled_reason"],
        canary=row["canary"],
        leak_report=_leak_report(row),
        rate_limit_per_minute=row["rate_limit_per_minute"],
        rate_limit_per_day=row["rate_limit_per_day"],
        token_budget=_token_budget(row),
        allowed_cidrs=tuple(row["allowed_cidrs"]),
        rotated_at=row["rotated_at"],
        previous_prefix=row["previous_prefix"],
        end_grace_when_quiet_seconds=row["end_grace_when_quiet_seconds"],
    )


def _leak_report(row: Any) -> LeakReport | None:
    if row["leak_reported_at"] is None:
        return None
    return LeakReport(
        row["leak_source"], row["leak_url"], row["leak_reported_at"], row["leak_action"]
    )


def _token_budget(row: Any) -> TokenBudget | None:
    tokens, period = row["token_budget_tokens"], row["token_budget_period"]
    return None if tokens is None else TokenBudget(tokens=tokens, period=period)


async def get_key(
    pool: Any, account_id: str, key_id: uuid.UUID
) -> tuple[AccessKey, datetime | None] | None:
    row = await pool.fetchrow(
        f"SELECT {_KEY_COLUMNS} FROM key_state k LEFT JOIN key_last_used u USING (key_id)"
        " WHERE k.key_id = $1 AND k.account_id = $2",
        key_id,
        account_id,
    )
    return None if row is None else (key_from_row(row), row["last_used_at"])


async def current_state(conn: Any, key_id: uuid.UUID) -> AccessKey | None:
    """The key's state from its read model, whatever the account (for use cases)."""
    row = await conn.fetchrow(
        f"SELECT {_KEY_COLUMNS} FROM key_state k LEFT JOIN key_last_used u USING (key_id)"
        " WHERE k.key_id = $1",
        key_id,
    )
    return None if row is None else key_from_row(row)


async def current_states(conn: Any, key_ids: list[uuid.UUID]) -> dict[uuid.UUID, AccessKey]:
    """`current_state` of several keys in one query (those that exist)."""
    rows = await conn.fetch(
        f"SELECT {_KEY_COLUMNS} FROM key_state k LEFT JOIN key_last_used u USING (key_id)"
        " WHERE k.key_id = ANY($1::uuid[])",
        key_ids,
    )
    return {r["key_id"]: key_from_row(r) for r in rows}


_STORED_AND_STATES = f"""
SELECT s.command_id AS stored_command_id, s.result AS stored_result, ks.*
FROM (SELECT command_id, result FROM processed_commands WHERE command_id = ANY($1::uuid[])) s
FULL JOIN (
    SELECT {_KEY_COLUMNS} FROM key_state k LEFT JOIN key_last_used u USING (key_id)
    WHERE k.key_id = ANY($2::uuid[])
) ks ON false
"""


async def stored_results_and_states(
    conn: Any, command_ids: list[uuid.UUID], key_ids: list[uuid.UUID]
) -> tuple[dict[uuid.UUID, str], dict[uuid.UUID, AccessKey]]:
    """The stored results (JSON) of those of `command_ids` processed before, and
    `current_states` of `key_ids`: one query (a join on false: the rows of each side
    with the other's columns null), one round trip for a batch of commands."""
    rows = await conn.fetch(_STORED_AND_STATES, command_ids, key_ids)
    results: dict[uuid.UUID, str] = {}
    states: dict[uuid.UUID, AccessKey] = {}
    for r in rows:
        if r["stored_command_id"] is not None:
            results[r["stored_command_id"]] = r["stored_result"]
        else:
            states[r["key_id"]] = key_from_row(r)
    return results, states


async def list_keys(
    pool: Any,
    account_id: str,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
    status: str | None,
) -> list[tuple[AccessKey, datetime | None]]:
    """Newest first; `after` is the (created_at, key_id) of the last item already seen."""
    rows = await pool.fetch(
        f"SELECT {_KEY_COLUMNS} FROM key_state k LEFT JOIN key_last_used u USING (key_id)"
        " WHERE k.account_id = $1 AND ($2::text IS NULL OR k.status = $2)"
        " AND ($3::timestamptz IS NULL OR (k.created_at, k.key_id) < ($3, $4::uuid))"
        " ORDER BY k.created_at DESC, k.key_id DESC LIMIT $5",
        account_id,
        status,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [(key_from_row(r), r["last_used_at"]) for r in rows]


async def find_secret(pool: Any, secret_hash: bytes) -> KnownSecret | None:
    row = await pool.fetchrow(
        "SELECT l.key_id, l.valid_until, k.account_id, k.environment, k.scopes,"
        " k.rate_limit_per_hour, k.status, k.expires_at, k.canary,"
        f" {_LIMIT_COLUMNS}"
        " FROM key_lookup l JOIN key_state k USING (key_id) WHERE l.secret_hash = $1",
        secret_hash,
    )
    if row is None:
        return None
    return KnownSecret(
        key_id=row["key_id"],
        account_id=row["account_id"],
        environment=row["environment"],
        scopes=tuple(row["scopes"]),
        rate_limit_per_hour=row["rate_limit_per_hour"],
        status=row["status"],
        expires_at=row["expires_at"],
        valid_until=row["valid_until"],
        canary=row["canary"],
        limits=KeyLimits.of(
            minute=row["rate_limit_per_minute"],
            hour=row["rate_limit_per_hour"],
            day=row["rate_limit_per_day"],
            budget=_token_budget(row),
            cidrs=row["allowed_cidrs"],
        ),
    )


async def due_to_expire(pool: Any, now: datetime, limit: int = 200) -> list[uuid.UUID]:
    rows = await pool.fetch(
        "SELECT key_id FROM key_state WHERE status IN ('active', 'disabled')"
        " AND expires_at IS NOT NULL AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
        now,
        limit,
    )
    return [r["key_id"] for r in rows]


async def quiet_old_secrets(
    pool: Any, now: datetime, limit: int = 200
) -> list[tuple[uuid.UUID, datetime | None]]:
    """Keys in a grace period that ends when quiet whose old secret has been quiet long
    enough by the stored last uses: (key_id, the old secret's last use or None)."""
    rows = await pool.fetch(
        "SELECT k.key_id, p.last_used_at FROM key_state k"
        " LEFT JOIN previous_secret_last_used p USING (key_id)"
        " WHERE k.end_grace_when_quiet_seconds IS NOT NULL AND k.grace_period_ends_at > $1"
        " AND k.status IN ('active', 'disabled')"
        " AND greatest(k.rotated_at, p.last_used_at)"
        "  + make_interval(secs => k.end_grace_when_quiet_seconds) <= $1"
        " ORDER BY k.grace_period_ends_at LIMIT $2",
        now,
        limit,
    )
    return [(r["key_id"], r["last_used_at"]) for r in rows]


async def previous_secret_last_used(conn: Any, key_id: uuid.UUID) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        "SELECT last_used_at FROM previous_secret_last_used WHERE key_id = $1", key_id
    )
    return value


async def record_previous_secret_used(
    pool: Any, latest: Mapping[tuple[str, str], datetime]
) -> None:
    """As `record_last_used`, for the secret a rotation replaced (while in its grace)."""
    await _move_forward(pool, "previous_secret_last_used", latest)


async def record_last_used(pool: Any, latest: Mapping[tuple[str, str], datetime]) -> None:
    """Move each key's last use forward to `latest` in one statement: never back (a replay
    or a late record changes nothing), never past now (a gateway's clock running ahead),
    and only for a key of the account the use names (other ids are not ours to mark)."""
    await _move_forward(pool, "key_last_used", latest)


async def _move_forward(pool: Any, table: str, latest: Mapping[tuple[str, str], datetime]) -> None:
    if not latest:
        return
    await pool.execute(
        f"INSERT INTO {table} AS u (key_id, last_used_at)"
        " SELECT s.key_id, least(max(s.at), now())"
        " FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS s(key_id, account_id, at)"
        " JOIN key_state k ON k.key_id = s.key_id AND k.account_id = s.account_id"
        " GROUP BY s.key_id"
        " ON CONFLICT (key_id) DO UPDATE SET last_used_at = EXCLUDED.last_used_at"
        " WHERE u.last_used_at < EXCLUDED.last_used_at",
        [key_id for key_id, _ in latest],
        [account_id for _, account_id in latest],
        list(latest.values()),
    )
