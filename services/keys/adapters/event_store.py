"""The PostgreSQL event store: append with optimistic concurrency, read streams, and the
sequencer that gives committed events their global position.

All functions take a connection, so the caller's transaction decides what is atomic:
an append, its read-model updates and the command's idempotency record commit together.
"""

from __future__ import annotations

import functools
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


_APPEND = """
WITH appended AS (
    INSERT INTO event_rows (event_id, key_id, account_id, stream_version, event_type,
        occurred_at, actor, correlation_id, causation_id, data, secret_hash)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::integer[], $5::text[],
        $6::timestamptz[], $7::jsonb[], $8::text[], $9::text[], $10::jsonb[], $11::bytea[])
    RETURNING id
), queued AS (INSERT INTO events_unsequenced (event_row) SELECT id FROM appended)"""
_APPEND_ARGS = 11
_PLACEHOLDER = re.compile(r"\$(\d+)")
Then = tuple[str, Sequence[Any]]
"""A data-modifying statement (its own $1.. placeholders) and its arguments."""


def _shift(match: re.Match[str], by: int) -> str:
    return f"${int(match[1]) + by}"


@functools.lru_cache(maxsize=64)
def _append_sql(then: tuple[tuple[str, int], ...]) -> str:
    """One statement: the event rows (arrays, one element per event: the same text for any
    number of events, so it is prepared once per connection), their ids queued for the
    sequencer, and each (statement, its number of arguments) of `then`, its placeholders
    numbered on after the arguments before it."""
    parts = [_APPEND]
    offset = _APPEND_ARGS
    for n, (sql, count) in enumerate(then):
        shifted = _PLACEHOLDER.sub(functools.partial(_shift, by=offset), sql)
        parts.append(f", then{n} AS ({shifted})")
        offset += count
    parts.append(" SELECT count(*) FROM appended")
    return "".join(parts)


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
    conn: Any, recorded: Sequence[RecordedEvent], then: Sequence[Then] = ()
) -> None:
    """Insert `recorded` (of one key or several; those of one key in version order) and
    queue them for the sequencer, with each of `then` (e.g. the read model's upsert, the
    commands' results) in the same statement: one round trip, atomic on its own. A stale
    version raises VersionConflict, as does a command result stored meanwhile."""
    try:
        await execute_append(conn, recorded, then)
    except asyncpg.UniqueViolationError as exc:
        conflict = version_conflict(exc)
        if conflict is None:
            raise
        raise conflict from None


async def execute_append(
    conn: Any, recorded: Sequence[RecordedEvent], then: Sequence[Then] = ()
) -> None:
    """`append_recorded`'s statement, its errors as PostgreSQL raised them."""
    actors: dict[int, str] = {}
    for e in recorded:
        if id(e.actor) not in actors:
            actors[id(e.actor)] = e.actor.model_dump_json()
    args: list[Any] = [
        [e.event_id for e in recorded],
        [e.key_id for e in recorded],
        [e.account_id for e in recorded],
        [e.stream_version for e in recorded],
        [e.event_type for e in recorded],
        [e.occurred_at for e in recorded],
        [actors[id(e.actor)] for e in recorded],
        [e.correlation_id for e in recorded],
        [e.causation_id for e in recorded],
        [orjson.dumps(e.data).decode() for e in recorded],
        [e.secret_hash for e in recorded],
    ]
    for _, then_args in then:
        args += then_args
    sql = _append_sql(tuple((t_sql, len(t_args)) for t_sql, t_args in then))
    await conn.execute(sql, *args)
    # No NOTIFY in here: PostgreSQL serializes the commits of transactions that notify,
    # which would make concurrent appends commit one by one. The publisher is woken after
    # the commit instead (see publisher.Nudger).


_STREAM_TAKEN = "events_key_id_stream_version_key"
_COMMAND_TAKEN = "processed_commands_pkey"
_TAKEN_KEY = re.compile(r"^Key \((?P<columns>[^)]*)\)=\((?P<values>[^)]*)\) already exists")


def version_conflict(exc: asyncpg.UniqueViolationError) -> VersionConflict | None:
    """The VersionConflict an append's unique violation means (None: not a conflict)."""
    if exc.constraint_name == _STREAM_TAKEN:
        return VersionConflict(
            "a key changed since the version these events follow; reload and retry"
        )
    if exc.constraint_name == _COMMAND_TAKEN:
        return VersionConflict("a command was processed concurrently")
    return None


def taken(exc: asyncpg.UniqueViolationError) -> tuple[str, uuid.UUID] | None:
    """What an append's conflict collided with, from PostgreSQL's detail: ("key", the key
    id) for a stream version already stored, ("command", the command id) for a command
    result already stored; None when the error does not say."""
    found = _TAKEN_KEY.match(getattr(exc, "detail", None) or "")
    if found is None:
        return None
    values = found["values"].split(", ")
    try:
        if exc.constraint_name == _STREAM_TAKEN:
            return "key", uuid.UUID(values[0])
        if exc.constraint_name == _COMMAND_TAKEN:
            return "command", uuid.UUID(values[0])
    except ValueError:
        return None
    return None


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


_ROUND = f"""
WITH todo AS (
    DELETE FROM events_unsequenced WHERE event_row IN (
        SELECT event_row FROM events_unsequenced ORDER BY event_row LIMIT $2
    ) RETURNING event_row
),
base AS (SELECT coalesce(max(position), 0) AS top FROM event_positions),
placed AS (
    INSERT INTO event_positions (position, event_row)
    SELECT base.top + row_number() OVER (ORDER BY todo.event_row), todo.event_row
    FROM todo, base
    RETURNING position, event_row
),
saved AS (
    INSERT INTO publisher_checkpoint (name, position) SELECT $3, $4 WHERE $4::bigint IS NOT NULL
    ON CONFLICT (name) DO UPDATE
        SET position = greatest(publisher_checkpoint.position, EXCLUDED.position)
),
due AS (
    SELECT position, event_row FROM event_positions WHERE position > $1
    UNION ALL
    SELECT position, event_row FROM placed
)
SELECT {_COLUMNS.replace("position", "due.position", 1)}
FROM due JOIN event_rows r ON r.id = due.event_row
ORDER BY due.position LIMIT $2
"""


async def publishing_round(
    conn: Any, after: int, limit: int, checkpoint: str, save: int | None
) -> list[RecordedEvent]:
    """One statement for a publisher's round: give at most `limit` committed, not yet
    sequenced events the next positions, in insert order (the sequencer), save
    `save` as the checkpoint `checkpoint` (when not None: what the previous round's send
    had the broker acknowledge), and read the first `limit` sequenced events past `after`.
    The statement sees event_positions as it was before its own insert, so the events it
    sequences come from that insert's RETURNING, the earlier ones from the table: none twice.
    Must run under the publisher's lock (one sequencer at a time). Only queue rows visible
    to this statement are committed ones (the append queues its events in its own
    statement); a transaction that commits later is simply picked up by a later round.
    Within one key, a later version was inserted after the earlier one committed (or in
    the same statement, after it), so insert order keeps stream order. The event rows
    themselves are not touched: the position is a row of its own (event_positions), and
    the queue row is deleted."""
    rows = await conn.fetch(_ROUND, after, limit, checkpoint, save)
    return [_record(r) for r in rows]


async def checkpoint(conn: Any, name: str) -> int:
    value = await conn.fetchval("SELECT position FROM publisher_checkpoint WHERE name = $1", name)
    return int(value or 0)
