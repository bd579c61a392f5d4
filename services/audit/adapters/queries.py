"""The query API's reads: one account's records, newest first, filtered, by keyset.

The order is (occurred_at, seq) descending, a total order within an account; a page starts
strictly after the last (occurred_at, seq) of the previous one, so records inserted while
a client pages through never shift a page nor appear twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from services.audit.adapters.chain_store import RECORD_COLUMNS
from services.audit.domain.entries import KEY_EVENT_ACTIONS

_KEY_EVENTS: Final = ", ".join(f"'{action}'" for action in sorted(KEY_EVENT_ACTIONS))
_NAMED_BY: Final = (
    "SELECT n.key_name FROM audit_records n WHERE n.account_id = r.account_id"
    f" AND n.key_id = r.key_id AND n.action IN ({_KEY_EVENTS}) AND n.key_name IS NOT NULL"
)
_KEY_NAME: Final = (
    "COALESCE(r.key_name, CASE WHEN r.key_id IS NOT NULL"
    f" AND r.action NOT IN ({_KEY_EVENTS}) THEN COALESCE("
    f"({_NAMED_BY} AND n.occurred_at <= r.occurred_at"
    " ORDER BY n.occurred_at DESC, n.seq DESC LIMIT 1),"
    f" ({_NAMED_BY} ORDER BY n.occurred_at, n.seq LIMIT 1)) END) AS key_name"
)
"""The key's name as the API shows it. A record of the key's own events stores it (hashed).
A rejection or an alert is read from another topic than the key's events, in no order with
them, so it stores none: its name is taken, when read, from the key's event records (which
are hashed): the name the key had at the record's time, or, for a record older than all of
them (clocks of two services), its first name. So the answer does not depend on which topic
audit read first, and a name learnt later shows at once."""
_SELECT: Final = (
    "SELECT "
    + ", ".join(_KEY_NAME if c == "key_name" else f"r.{c}" for c in RECORD_COLUMNS)
    + " FROM audit_records r"
)
EXPORT_PREFETCH: Final = 500


@dataclass(frozen=True, slots=True)
class Filters:
    account_id: str
    key_id: UUID | None = None
    actor_id: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: the next one starts strictly after it."""

    occurred_at: datetime
    seq: int


def _query(filters: Filters, after: Position | None, limit: int | None) -> tuple[str, list[Any]]:
    args: list[Any] = [filters.account_id]
    where = ["account_id = $1"]

    def add(condition: str, *values: Any) -> None:
        """`condition` with its {0}, {1}... as the next $n parameters."""
        placeholders = []
        for value in values:
            args.append(value)
            placeholders.append(f"${len(args)}")
        where.append(condition.format(*placeholders))

    if filters.key_id is not None:
        add("key_id = {0}", filters.key_id)
    if filters.actor_id is not None:
        add("actor_id = {0}", filters.actor_id)
    if filters.action is not None:
        add("action = {0}", filters.action)
    if filters.since is not None:
        add("occurred_at >= {0}", filters.since)
    if filters.until is not None:
        add("occurred_at < {0}", filters.until)
    if after is not None:
        add("(occurred_at, seq) < ({0}, {1})", after.occurred_at, after.seq)
    sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY occurred_at DESC, seq DESC"
    if limit is not None:
        args.append(limit)
        sql += f" LIMIT ${len(args)}"
    return sql, args


async def key_in_account(pool: Any, account_id: str, key_id: UUID) -> bool:
    """Does the account's audit log know this key (by its name or a record about it)?"""
    known: bool = await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM audit_key_names WHERE key_id = $2 AND account_id = $1)"
        " OR EXISTS (SELECT 1 FROM audit_records WHERE account_id = $1 AND key_id = $2)",
        account_id,
        key_id,
    )
    return known


async def page(pool: Any, filters: Filters, after: Position | None, limit: int) -> list[Any]:
    sql, args = _query(filters, after, limit)
    rows: list[Any] = await pool.fetch(sql, *args)
    return rows


async def export(
    pool: Any, filters: Filters, after: Position | None, limit: int | None
) -> AsyncIterator[Any]:
    """Every matching row through a server-side cursor: memory stays flat at any size.

    The connection is held until the last row is read (or the reader goes away).
    """
    sql, args = _query(filters, after, limit)
    async with (
        pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        async for row in conn.cursor(sql, *args, prefetch=EXPORT_PREFETCH):
            yield row
