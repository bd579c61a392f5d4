"""The PostgreSQL event store: append with optimistic concurrency, read streams, and the
sequencer that gives committed events their global position.

All functions take a connection, so the caller's transaction decides what is atomic:
an append, its read-model updates and the command's idempotency record commit together.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from contracts import Actor
from services.keys.domain.errors import VersionConflict
from services.keys.domain.recorded import Change, Meta, RecordedEvent

NOTIFY_CHANNEL = "keys_events"
_COLUMNS = (
    "event_id, key_id, account_id, stream_version, position, event_type, occurred_at,"
    " actor, correlation_id, causation_id, data, secret_hash"
)


def _record(row: Any) -> RecordedEvent:
    return RecordedEvent(
        event_id=row["event_id"],
        key_id=row["key_id"],
        account_id=row["account_id"],
        stream_version=row["stream_version"],
        position=row["position"],
        event_type=row["event_type"],
        occurred_at=row["occurred_at"],
        actor=Actor.model_validate_json(row["actor"]),
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        data=orjson.loads(row["data"]),
        secret_hash=row["secret_hash"],
    )


_EVENT_COLUMNS = (
    "event_id, key_id, account_id, stream_version, event_type, occurred_at, actor,"
    " correlation_id, causation_id, data, secret_hash"
)
_PER_EVENT = 11
_PLACEHOLDER = re.compile(r"\$(\d+)")


def _append_sql(events: int, then: str | None) -> str:
    """One statement: the event rows, their ids queued for the sequencer, and `then` (a
    statement with its own $1.. placeholders, numbered on after the events' values)."""
    rows = ", ".join(
        "("
        + ", ".join(
            f"${n * _PER_EVENT + i}{'::jsonb' if i in (7, 10) else ''}"
            for i in range(1, _PER_EVENT + 1)
        )
        + ")"
        for n in range(events)
    )
    sql = (
        f"WITH appended AS (INSERT INTO event_rows ({_EVENT_COLUMNS}) VALUES {rows}"
        " RETURNING id), queued AS (INSERT INTO events_unsequenced (event_row)"
        " SELECT id FROM appended)"
    )
    if then is None:
        return sql + " SELECT count(*) FROM appended"
    offset = events * _PER_EVENT
    return sql + " " + _PLACEHOLDER.sub(lambda m: f"${int(m[1]) + offset}", then)


def record(
    key_id: uuid.UUID,
    account_id: str,
    expected_version: int,
    changes: Sequence[Change],
    meta: Meta,
) -> list[RecordedEvent]:
    """The events `changes` become when appended after `expected_version`."""
    return [
        RecordedEvent(
            event_id=uuid.uuid4(),
            key_id=key_id,
            account_id=account_id,
            stream_version=expected_version + i,
            position=None,
            event_type=change.event_type,
            occurred_at=meta.occurred_at,
            actor=meta.actor,
            correlation_id=meta.correlation_id,
            causation_id=meta.causation_id,
            data=change.data.model_dump(mode="json"),
            secret_hash=change.secret_hash,
        )
        for i, change in enumerate(changes, start=1)
    ]


async def append_recorded(
    conn: Any,
    recorded: Sequence[RecordedEvent],
    then: tuple[str, Sequence[Any]] | None = None,
) -> None:
    """Insert `recorded` (consecutive versions of one key) and queue them for the
    sequencer, with `then` (a statement and its arguments, e.g. the read model's upsert)
    in the same statement: one round trip. A stale version raises VersionConflict."""
    args: list[Any] = []
    actor_json = recorded[0].actor.model_dump_json() if recorded else None
    for e in recorded:
        args += (
            e.event_id,
            e.key_id,
            e.account_id,
            e.stream_version,
            e.event_type,
            e.occurred_at,
            actor_json,
            e.correlation_id,
            e.causation_id,
            orjson.dumps(e.data).decode(),
            e.secret_hash,
        )
    if then is not None:
        args += then[1]
    try:
        await conn.execute(_append_sql(len(recorded), then and then[0]), *args)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "events_key_id_stream_version_key":
            first = recorded[0]
            raise VersionConflict(
                f"key {first.key_id} changed since version {first.stream_version - 1};"
                " reload and retry"
            ) from None
        raise
    # No NOTIFY in here: PostgreSQL serializes the commits of transactions that notify,
    # which would make concurrent appends commit one by one. The publisher is woken after
    # the commit instead (see publisher.Nudger).


async def append(
    conn: Any,
    key_id: uuid.UUID,
    account_id: str,
    expected_version: int,
    changes: Sequence[Change],
    meta: Meta,
) -> list[RecordedEvent]:
    """Append `changes` after `expected_version`; a stale version raises VersionConflict."""
    recorded = record(key_id, account_id, expected_version, changes, meta)
    await append_recorded(conn, recorded)
    return recorded


async def stream(conn: Any, key_id: uuid.UUID) -> list[RecordedEvent]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM events WHERE key_id = $1 ORDER BY stream_version", key_id
    )
    return [_record(r) for r in rows]


async def stream_page(
    conn: Any, key_id: uuid.UUID, limit: int, before_version: int | None
) -> list[RecordedEvent]:
    """A key's events, newest first, `limit` at a time (for the history endpoint)."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM events WHERE key_id = $1 AND stream_version < $2"
        " ORDER BY stream_version DESC LIMIT $3",
        key_id,
        before_version or 2**31 - 1,
        limit,
    )
    return [_record(r) for r in rows]


async def all_events(conn: Any, after_id: int, limit: int) -> list[tuple[int, RecordedEvent]]:
    """Every event in insert order, for rebuilding read models."""
    rows = await conn.fetch(
        f"SELECT id, {_COLUMNS} FROM events WHERE id > $1 ORDER BY id LIMIT $2", after_id, limit
    )
    return [(r["id"], _record(r)) for r in rows]


async def sequence(conn: Any, limit: int = 5000) -> int:
    """Give the committed, not yet sequenced events the next positions, in insert order.

    Must run under the publisher's lock (one sequencer at a time). Only queue rows visible
    to this statement are committed ones (the append queues its events in its own
    statement); a transaction that commits later is simply picked up by a later call.
    Within one key, a later version was inserted after the earlier one committed, so insert
    order keeps stream order. The event rows themselves are not touched: the position is a
    row of its own (event_positions), and the queue row is deleted.
    """
    status: str = await conn.execute(
        """
        WITH todo AS (
            DELETE FROM events_unsequenced WHERE event_row IN (
                SELECT event_row FROM events_unsequenced ORDER BY event_row LIMIT $1
            ) RETURNING event_row
        ),
        base AS (SELECT coalesce(max(position), 0) AS top FROM event_positions)
        INSERT INTO event_positions (position, event_row)
        SELECT base.top + row_number() OVER (ORDER BY todo.event_row), todo.event_row
        FROM todo, base
        """,
        limit,
    )
    return int(status.rsplit(" ", 1)[-1])


async def sequenced_after(conn: Any, position: int, limit: int) -> list[RecordedEvent]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM event_positions p JOIN event_rows r ON r.id = p.event_row"
        " WHERE p.position > $1 ORDER BY p.position LIMIT $2",
        position,
        limit,
    )
    return [_record(r) for r in rows]


async def checkpoint(conn: Any, name: str) -> int:
    value = await conn.fetchval("SELECT position FROM publisher_checkpoint WHERE name = $1", name)
    return int(value or 0)


async def save_checkpoint(conn: Any, name: str, position: int) -> None:
    await conn.execute(
        "INSERT INTO publisher_checkpoint (name, position) VALUES ($1, $2)"
        " ON CONFLICT (name) DO UPDATE SET position = greatest(publisher_checkpoint.position, $2)",
        name,
        position,
    )
