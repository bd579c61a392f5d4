"""PostgreSQL of the limit counter: positions, recent record ids, windows, states.

Each write is one statement over arrays, so a batch costs the same few round trips
whatever its size. Window starts are epoch seconds; times of states travel as epoch
seconds (float8) and are stored as timestamptz.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from servicekit.db import int_array
from services.usage.domain.limits import Evaluated, Windows
from services.usage.domain.requests import TOKENS_CAP, capped


async def lock_positions(conn: Any, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    """The next offset to count of each partition, locked until commit (a partition moved
    to another process mid-batch waits for this one and then skips what it counted)."""
    await conn.execute(
        "INSERT INTO limit_offsets (topic, partition, next_offset)"
        " SELECT $1, p, 0 FROM unnest($2::int[]) AS p ON CONFLICT DO NOTHING",
        topic,
        list(partitions),
    )
    rows = await conn.fetch(
        "SELECT partition, next_offset FROM limit_offsets"
        " WHERE topic = $1 AND partition = ANY($2::int[]) ORDER BY partition FOR UPDATE",
        topic,
        list(partitions),
    )
    return {r[0]: r[1] for r in rows}


async def save_positions(conn: Any, topic: str, positions: dict[int, int]) -> None:
    await conn.execute(
        "UPDATE limit_offsets o SET next_offset = u.n"
        " FROM unnest($2::int[], $3::bigint[]) AS u(p, n)"
        " WHERE o.topic = $1 AND o.partition = u.p",
        topic,
        list(positions),
        list(positions.values()),
    )


async def save_seen(conn: Any, topic: str, rows: Sequence[tuple[int, int, int, str]]) -> None:
    """(partition, last offset, newest event minute, space-separated record ids)."""
    await conn.execute(
        "INSERT INTO limit_seen (topic, partition, last_offset, minute, record_ids)"
        " SELECT $1, p, o, m, r FROM unnest($2::int[], $3::bigint[], $4::bigint[], $5::text[])"
        " AS u(p, o, m, r) ON CONFLICT DO NOTHING",
        topic,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )


async def load_seen(
    conn: Any, topic: str, partition: int, since_minute: int
) -> list[tuple[int, str]]:
    """The record ids a partition counted since `since_minute`, oldest first: (minute, ids)."""
    rows = await conn.fetch(
        "SELECT minute, record_ids FROM limit_seen WHERE topic = $1 AND partition = $2"
        " AND minute >= $3 ORDER BY last_offset",
        topic,
        partition,
        since_minute,
    )
    return [(r[0], r[1]) for r in rows]


_WINDOW_COLUMNS = (
    "minute_start, minute_requests, hour_start, hour_requests, day_start, day_requests,"
    " day_tokens, month_start, month_tokens"
)


def _merged(start: str, *counts: str) -> str:
    """SET clauses of one span: the batch's window replaces an older stored one, adds to
    the same one (saturating at TOKENS_CAP), and is left out when older (PostgreSQL reads
    w.* as before the update)."""
    clauses = [
        f"{c} = CASE WHEN EXCLUDED.{start} > w.{start} THEN EXCLUDED.{c}"
        f" WHEN EXCLUDED.{start} = w.{start} THEN least(w.{c} + EXCLUDED.{c}, {TOKENS_CAP})"
        f" ELSE w.{c} END"
        for c in counts
    ]
    return ", ".join([*clauses, f"{start} = greatest(w.{start}, EXCLUDED.{start})"])


_MERGE = ", ".join(
    [
        _merged("minute_start", "minute_requests"),
        _merged("hour_start", "hour_requests"),
        _merged("day_start", "day_requests", "day_tokens"),
        _merged("month_start", "month_tokens"),
    ]
)


_ADD_COUNTS = (
    f"INSERT INTO limit_windows AS w (key_id, {_WINDOW_COLUMNS})"
    " SELECT * FROM unnest(string_to_array($1, ' ')::uuid[], $2::text::bigint[],"
    " $3::text::bigint[], $4::text::bigint[], $5::text::bigint[], $6::text::bigint[],"
    " $7::text::bigint[], $8::text::bigint[], $9::text::bigint[], $10::text::bigint[])"
    f" ON CONFLICT (key_id) DO UPDATE SET {_MERGE}"
)


async def add_counts(
    conn: Any, windows: dict[str, Windows], wanted: Collection[str]
) -> dict[str, Windows]:
    """Merge the batch's windows into the keys' stored ones; returns the windows after it
    of the keys in `wanted` (those with limits: the others' are stored for the day a limit
    comes, and nothing reads them now)."""
    if not windows:
        return {}
    keys = list(windows)
    columns = list(zip(*windows.values(), strict=True))
    # A window's tokens saturate at TOKENS_CAP (so do its requests, which never get near).
    arguments = [" ".join(keys), *[int_array(capped(column, TOKENS_CAP)) for column in columns]]
    if not wanted:
        await conn.execute(_ADD_COUNTS, *arguments)
        return {}
    rows = await conn.fetch(
        f"WITH merged AS ({_ADD_COUNTS} RETURNING key_id, {_WINDOW_COLUMNS})"
        f" SELECT key_id::text, {_WINDOW_COLUMNS} FROM merged"
        " JOIN unnest(string_to_array($11, ' ')::uuid[]) AS wanted (k) ON key_id = k",
        *arguments,
        " ".join(wanted),
    )
    return {r[0]: list(r[1:]) for r in rows}


async def stored_windows(conn: Any, key_ids: Sequence[str]) -> dict[str, Windows]:
    rows = await conn.fetch(
        f"SELECT key_id::text, {_WINDOW_COLUMNS} FROM limit_windows WHERE key_id = ANY($1::uuid[])",
        list(key_ids),
    )
    return {r[0]: list(r[1:]) for r in rows}


async def stored_as_of(conn: Any, key_ids: Sequence[str]) -> dict[str, float]:
    rows = await conn.fetch(
        "SELECT key_id::text, extract(epoch FROM as_of)::float8 FROM limit_states"
        " WHERE key_id = ANY($1::uuid[])",
        list(key_ids),
    )
    return {r[0]: r[1] for r in rows}


async def save_states(conn: Any, states: Sequence[Evaluated]) -> int:
    """Store the states; a stored one of a newer event time is kept (a late batch). A
    change of state (or limit, or until) is urgent; a clear state's moved counts are
    pending too (published at most about once a second); a limited state that only counted
    on is stored but not sent again. Returns how many changes of state were stored."""
    if not states:
        return 0
    states = sorted(states, key=lambda s: s.key_id)  # rows locked in one order by every writer
    changed: int = await conn.fetchval(
        "WITH saved AS (INSERT INTO limit_states AS s (key_id, account_id, state, limit_name,"
        " until, as_of, body, pending, urgent)"
        " SELECT k, a, st, ln, to_timestamp(u), to_timestamp(t), b, true, st <> 'clear'"
        " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::float8[],"
        " $6::float8[], $7::text[]) AS x(k, a, st, ln, u, t, b)"
        " ON CONFLICT (key_id) DO UPDATE SET account_id = EXCLUDED.account_id,"
        " state = EXCLUDED.state, limit_name = EXCLUDED.limit_name, until = EXCLUDED.until,"
        " as_of = EXCLUDED.as_of, body = EXCLUDED.body, revision = s.revision + 1,"
        " urgent = s.urgent OR (s.state, s.limit_name, s.until)"
        "  IS DISTINCT FROM (EXCLUDED.state, EXCLUDED.limit_name, EXCLUDED.until),"
        " pending = s.pending OR EXCLUDED.state = 'clear' OR (s.state, s.limit_name, s.until)"
        "  IS DISTINCT FROM (EXCLUDED.state, EXCLUDED.limit_name, EXCLUDED.until)"
        " WHERE s.as_of <= EXCLUDED.as_of RETURNING urgent)"
        " SELECT count(*) FILTER (WHERE urgent) FROM saved",
        [s.key_id for s in states],
        [s.account_id for s in states],
        [s.state for s in states],
        [s.limit_name for s in states],
        [s.until for s in states],
        [s.as_of for s in states],
        [s.body for s in states],
    )
    return changed


async def expired_limits(conn: Any, now: float, limit: int) -> list[tuple[str, str, float, float]]:
    """Limited keys whose window has ended by `now`: (key_id, account_id, until, as_of)."""
    rows = await conn.fetch(
        "SELECT key_id::text, account_id, extract(epoch FROM until)::float8,"
        " extract(epoch FROM as_of)::float8 FROM limit_states"
        " WHERE state <> 'clear' AND until <= to_timestamp($1) ORDER BY until LIMIT $2",
        now,
        limit,
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def due(pool: Any, min_interval: float, limit: int) -> list[tuple[str, int, str]]:
    """States to publish: changes at once, moved counts of a key at most once per
    `min_interval` seconds. (key_id, revision, body), changes first."""
    rows = await pool.fetch(
        "SELECT key_id::text, revision, body FROM limit_states WHERE pending AND (urgent"
        " OR published_at IS NULL OR published_at <= now() - make_interval(secs => $1))"
        " ORDER BY urgent DESC, as_of LIMIT $2",
        min_interval,
        limit,
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def mark_published(pool: Any, sent: Sequence[tuple[str, int]]) -> None:
    """What was sent is done, unless the state was written again meanwhile."""
    await pool.execute(
        "UPDATE limit_states s SET published_at = now(),"
        " pending = s.revision <> u.r, urgent = s.urgent AND s.revision <> u.r"
        " FROM unnest($1::uuid[], $2::bigint[]) AS u(k, r) WHERE s.key_id = u.k",
        [s[0] for s in sent],
        [s[1] for s in sent],
    )


async def prune(conn: Any, now: float, seen_before_minute: int) -> None:
    """Forget the windows of keys unused for two months (every window of theirs is over)
    and the record ids older than the dedup horizon."""
    await conn.execute("DELETE FROM limit_windows WHERE month_start < $1", int(now) - 64 * 86400)
    await conn.execute("DELETE FROM limit_seen WHERE minute < $1", seen_before_minute)
