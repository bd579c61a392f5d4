"""The PostgreSQL event store: append with optimistic concurrency, read streams, and the
sequencer that gives committed events their global position.

All functions take a connection, so the caller's transaction decides what is atomic:
an append, its read-model updates and the command's idempotency record commit together.
"""

from __future__ import annotations

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


async def append(
    conn: Any,
    key_id: uuid.UUID,
    account_id: str,
    expected_version: int,
    changes: Sequence[Change],
    meta: Meta,
) -> list[RecordedEvent]:
    """Append `changes` after `expected_version`; a stale version raises VersionConflict."""
    recorded = [
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
    try:
        await conn.executemany(
            "INSERT INTO events (event_id, key_id, account_id, stream_version, event_type,"
            " occurred_at, actor, correlation_id, causation_id, data, secret_hash)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10::jsonb, $11)",
            [
                (
                    e.event_id,
                    e.key_id,
                    e.account_id,
                    e.stream_version,
                    e.event_type,
                    e.occurred_at,
                    e.actor.model_dump_json(),
                    e.correlation_id,
                    e.causation_id,
                    orjson.dumps(e.data).decode(),
                    e.secret_hash,
                )
                for e in recorded
            ],
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "events_key_id_stream_version_key":
            raise VersionConflict(
                f"key {key_id} changed since version {expected_version}; reload and retry"
            ) from None
        raise
    # No NOTIFY in here: PostgreSQL serializes the commits of transactions that notify,
    # which would make concurrent appends commit one by one. The publisher is woken after
    # the commit instead (see publisher.Nudger).
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

    Must run under the publisher's lock (one sequencer at a time). Only rows visible to
    this statement are committed ones; a transaction that commits later is simply picked
    up by a later call. Within one key, a later version was inserted after the earlier one
    committed, so insert order keeps stream order.
    """
    status: str = await conn.execute(
        """
        WITH base AS (SELECT coalesce(max(position), 0) AS top FROM events),
        todo AS (
            SELECT id, row_number() OVER (ORDER BY id) AS n
            FROM events WHERE position IS NULL ORDER BY id LIMIT $1
        )
        UPDATE events e SET position = base.top + todo.n
        FROM todo, base WHERE e.id = todo.id
        """,
        limit,
    )
    return int(status.rsplit(" ", 1)[-1])


async def sequenced_after(conn: Any, position: int, limit: int) -> list[RecordedEvent]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
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
