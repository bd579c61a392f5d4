"""Webhooks and their deliveries in PostgreSQL: the account's webhooks, the deliveries
the intake adds (one per webhook and alert), and the worker's claims and results."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

_WEBHOOK = "webhook_id, url, kinds, min_severity, created_at, failing_since, disabled_at"
_DELIVERY = (
    "alert_id, kind, severity, status, attempts, created_at, first_attempt_at,"
    " last_attempt_at, CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at,"
    " delivered_at, last_status_code, last_error"
)


@dataclass(frozen=True)
class Due:
    """A delivery claimed by this process: what to send, where, signed with what."""

    webhook_id: uuid.UUID
    alert_id: uuid.UUID
    account_id: str
    url: str
    secret: str
    body: bytes
    attempts: int
    first_attempt_at: datetime | None


async def create(
    pool: Any, webhook_id: uuid.UUID, account_id: str, url: str, kinds: Sequence[str],
    min_severity: str, min_rank: int, secret: str, max_per_account: int,
) -> dict[str, Any] | None:  # fmt: skip
    """The new webhook, or None when the account already has `max_per_account`."""
    async with pool.acquire() as conn, conn.transaction():
        # One account's creations in turn, so the count cannot be raced past.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('webhooks:' || $1))", account_id)
        count = await conn.fetchval(
            "SELECT count(*) FROM webhooks WHERE account_id = $1", account_id
        )
        if count >= max_per_account:
            return None
        row = await conn.fetchrow(
            "INSERT INTO webhooks (webhook_id, account_id, url, kinds, min_severity, min_rank,"
            f" secret) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_WEBHOOK}",
            webhook_id, account_id, url, list(kinds), min_severity, min_rank, secret,
        )  # fmt: skip
        return dict(row)


async def listed(
    pool: Any, account_id: str, before: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[dict[str, Any]]:
    return await _page(
        pool, _WEBHOOK, "webhooks", "account_id", "webhook_id", account_id, before, limit
    )


async def exists(pool: Any, account_id: str, webhook_id: uuid.UUID) -> bool:
    found = await pool.fetchval(
        "SELECT true FROM webhooks WHERE webhook_id = $1 AND account_id = $2",
        webhook_id,
        account_id,
    )
    return bool(found)


async def get(pool: Any, account_id: str, webhook_id: uuid.UUID) -> dict[str, Any] | None:
    """The account's webhook, or None when the account has no such one."""
    row = await pool.fetchrow(
        f"SELECT {_WEBHOOK} FROM webhooks WHERE webhook_id = $1 AND account_id = $2",
        webhook_id,
        account_id,
    )
    return None if row is None else dict(row)


async def enable(pool: Any, account_id: str, webhook_id: uuid.UUID) -> dict[str, Any] | None:
    """Sends to a disabled webhook again, its failure clock started afresh (an active one is
    left as it is: enabling cannot hide that it is failing); None when there is no such one.
    What it failed to send while disabled stays failed: only alerts from now on go."""
    row = await pool.fetchrow(
        "UPDATE webhooks SET failing_since = CASE WHEN disabled_at IS NULL THEN failing_since END,"
        f" disabled_at = NULL WHERE webhook_id = $1 AND account_id = $2 RETURNING {_WEBHOOK}",
        webhook_id,
        account_id,
    )
    return None if row is None else dict(row)


async def delete(pool: Any, account_id: str, webhook_id: uuid.UUID) -> bool:
    """Deletes the webhook and its deliveries; False when the account has no such one."""
    status: str = await pool.execute(
        "DELETE FROM webhooks WHERE webhook_id = $1 AND account_id = $2", webhook_id, account_id
    )
    return status != "DELETE 0"


async def deliveries(
    pool: Any, webhook_id: uuid.UUID, before: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[dict[str, Any]]:
    return await _page(
        pool, _DELIVERY, "webhook_deliveries", "webhook_id", "alert_id", webhook_id, before, limit
    )


async def _page(
    pool: Any, columns: str, table: str, owner: str, id_column: str, owner_value: object,
    before: tuple[datetime, uuid.UUID] | None, limit: int,
) -> list[dict[str, Any]]:  # fmt: skip
    """A page of `table`'s rows of one owner, newest first, after `before` (the last
    (created_at, id) already seen). The names are this module's constants, never input."""
    rows = await pool.fetch(
        f"SELECT {columns} FROM {table} WHERE {owner} = $1"
        f" AND ($2::timestamptz IS NULL OR (created_at, {id_column}) < ($2, $3::uuid))"
        f" ORDER BY created_at DESC, {id_column} DESC LIMIT $4",
        owner_value, before[0] if before else None, before[1] if before else None, limit,
    )  # fmt: skip
    return [dict(r) for r in rows]


async def add_deliveries(
    conn: Any, alerts: Sequence[tuple[uuid.UUID, str, str, str, int, datetime, bytes]]
) -> int:
    """One pending delivery per alert (alert_id, account, kind, severity, rank,
    detected_at, body) and enabled webhook of its account that wants it; a known pair is
    left as it is. An alert older than the webhook (by more than a few minutes) is not
    sent to it: a consumer group read again from the start floods nobody with the past."""
    if not alerts:
        return 0
    status: str = await conn.execute(
        "INSERT INTO webhook_deliveries (webhook_id, alert_id, kind, severity, body)"
        " SELECT w.webhook_id, u.i, u.k, u.s, u.b FROM unnest($1::uuid[], $2::text[],"
        " $3::text[], $4::text[], $5::smallint[], $6::timestamptz[], $7::bytea[])"
        " AS u(i, a, k, s, r, d, b)"
        " JOIN webhooks w ON w.account_id = u.a AND w.disabled_at IS NULL"
        " AND (cardinality(w.kinds) = 0 OR u.k = ANY(w.kinds)) AND u.r >= w.min_rank"
        " AND u.d >= w.created_at - interval '5 minutes'"
        " ON CONFLICT (webhook_id, alert_id) DO NOTHING",
        *(list(column) for column in zip(*alerts, strict=True)),
    )
    return int(status.rsplit(" ", 1)[-1])


async def claim_due(pool: Any, limit: int, lease_seconds: float) -> list[Due]:
    """Deliveries due now, each pushed `lease_seconds` ahead so that no other process
    (nor this one's next round) takes it while it is being sent; a process that dies
    holding one leaves it to be retried when the lease ends."""
    rows = await pool.fetch(
        "WITH due AS (SELECT webhook_id, alert_id FROM webhook_deliveries"
        " WHERE status = 'pending' AND next_attempt_at <= now()"
        " ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " UPDATE webhook_deliveries d"
        " SET next_attempt_at = now() + make_interval(secs => $2)"
        " FROM due, webhooks w WHERE d.webhook_id = due.webhook_id"
        " AND d.alert_id = due.alert_id AND w.webhook_id = d.webhook_id"
        " RETURNING d.webhook_id, d.alert_id, w.account_id, w.url, w.secret, d.body,"
        " d.attempts, d.first_attempt_at",
        limit,
        lease_seconds,
    )
    return [Due(*r) for r in rows]


async def record_success(conn: Any, due: Due, status_code: int) -> None:
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1,"
        " first_attempt_at = coalesce(first_attempt_at, now()), last_attempt_at = now(),"
        " delivered_at = now(), last_status_code = $3, last_error = NULL"
        " WHERE webhook_id = $1 AND alert_id = $2 AND status = 'pending'",
        due.webhook_id, due.alert_id, status_code,
    )  # fmt: skip
    await conn.execute(
        "UPDATE webhooks SET failing_since = NULL WHERE webhook_id = $1", due.webhook_id
    )


async def record_failure(
    conn: Any,
    due: Due,
    status_code: int | None,
    error: str,
    retry_in: float,
    give_up_seconds: float,
) -> datetime | None:
    """Records the failed try: retried after `retry_in` seconds, or failed for good once
    tried for `give_up_seconds`. Answers since when the webhook has been failing."""
    await conn.execute(
        "UPDATE webhook_deliveries SET attempts = attempts + 1,"
        " first_attempt_at = coalesce(first_attempt_at, now()), last_attempt_at = now(),"
        " last_status_code = $3, last_error = $4,"
        " status = CASE WHEN coalesce(first_attempt_at, now())"
        "   <= now() - make_interval(secs => $6) THEN 'failed' ELSE 'pending' END,"
        " next_attempt_at = now() + make_interval(secs => $5)"
        " WHERE webhook_id = $1 AND alert_id = $2 AND status = 'pending'",
        due.webhook_id, due.alert_id, status_code, error[:500], retry_in, give_up_seconds,
    )  # fmt: skip
    since: datetime | None = await conn.fetchval(
        "UPDATE webhooks SET failing_since = coalesce(failing_since, now())"
        " WHERE webhook_id = $1 AND disabled_at IS NULL RETURNING failing_since",
        due.webhook_id,
    )
    return since


async def disable(conn: Any, webhook_id: uuid.UUID) -> dict[str, Any] | None:
    """Disables the webhook and fails what it still had to send; None if it already was."""
    row = await conn.fetchrow(
        "UPDATE webhooks SET disabled_at = now() WHERE webhook_id = $1 AND disabled_at IS NULL"
        " RETURNING webhook_id, account_id, url, failing_since",
        webhook_id,
    )
    if row is None:
        return None
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'failed',"
        " last_error = coalesce(last_error || '; ', '') || 'webhook disabled'"
        " WHERE webhook_id = $1 AND status = 'pending'",
        webhook_id,
    )
    return dict(row)
