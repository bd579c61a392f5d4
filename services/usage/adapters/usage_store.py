"""PostgreSQL writes of one ingested batch: dedup (record_offsets, seen_batches), rollups.

Each function is one statement over arrays (`unnest`), so a batch of thousands of
records costs a handful of round trips. Times travel as epoch seconds (float8) and are
turned into timestamptz by the server, which is cheaper than building datetimes here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from servicekit.db import int_array
from services.usage.domain.requests import (
    LATENCY_SUM_CAP,
    MAX_NETWORKS_PER_MINUTE,
    TOKENS_CAP,
    MinuteRollup,
    capped,
)


async def counted_through(conn: Any, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    """The next offset to count of each partition (those counted before), locked until the
    transaction ends: two processes that both believe they hold a partition (a rebalance
    under way) count its records one after the other, never both."""
    rows = await conn.fetch(
        "SELECT partition, next_offset FROM record_offsets"
        " WHERE topic = $1 AND partition = ANY($2::int[]) FOR UPDATE",
        topic,
        partitions,
    )
    return dict(rows)


async def record_batch(
    conn: Any, topic: str, next_offsets: dict[int, int], minute: int, record_ids: Sequence[str]
) -> None:
    """Store where each partition is counted up to, and the batch's record ids (one row).

    `minute` is the batch's newest event minute: the horizon is counted from when an id
    was seen (in event time), so a late record's id is kept as long as a timely one's."""
    await conn.execute(
        "WITH ids AS (INSERT INTO seen_batches (minute, record_ids)"
        " SELECT to_timestamp($4::bigint * 60), $5 WHERE $5 <> '')"
        " INSERT INTO record_offsets AS o (topic, partition, next_offset)"
        " SELECT $1, p, n FROM unnest($2::int[], $3::bigint[]) AS u(p, n)"
        " ON CONFLICT (topic, partition) DO UPDATE"
        " SET next_offset = greatest(o.next_offset, EXCLUDED.next_offset)",
        topic,
        list(next_offsets),
        list(next_offsets.values()),
        minute,
        " ".join(record_ids),  # one text: cheaper to send and store than 5,000 values
    )


async def recent_ids(conn: Any, horizon_minutes: int, limit: int) -> list[tuple[int, list[str]]]:
    """(minute, ids) of the batches within the horizon of the newest, oldest first, at
    most about `limit` ids (the newest kept)."""
    batches: list[tuple[int, list[str]]] = []
    held = 0
    async with conn.transaction():
        async for minute, text in conn.cursor(
            "SELECT (extract(epoch FROM minute) / 60)::bigint, record_ids FROM seen_batches"
            " WHERE minute >= (SELECT max(minute) FROM seen_batches)"
            "  - make_interval(mins => $1::int) ORDER BY id DESC",
            horizon_minutes,
        ):
            ids = text.split(" ")
            batches.append((minute, ids))
            held += len(ids)
            if held >= limit:
                break
    batches.reverse()
    return batches


_ROLLUP_COLUMNS = (
    "key_id, minute, account_id, requests, status_2xx, status_3xx, status_4xx, status_5xx,"
    " auth_failures, tokens_in, tokens_out, latency_sum_ms, latency_max_ms, first_at, last_at,"
    " networks"
)
_MERGE_NETWORKS = (
    "CASE WHEN EXCLUDED.networks <@ r.networks OR cardinality(r.networks) >= 256"
    " THEN r.networks ELSE ARRAY(SELECT DISTINCT n FROM unnest(r.networks || EXCLUDED.networks)"
    " AS n ORDER BY n LIMIT 256) END"
)


async def add_rollups(conn: Any, rows: Sequence[MinuteRollup]) -> None:
    """Add the batch's rows to the stored ones; tokens and latency sums saturate (at
    TOKENS_CAP, LATENCY_SUM_CAP) instead of failing the batch with an overflow."""
    await conn.execute(
        f"INSERT INTO rollups AS r ({_ROLLUP_COLUMNS})"
        " SELECT k, to_timestamp(m * 60), a, n, s2, s3, s4, s5, af, ti, tout, ls, lm,"
        " to_timestamp(fa), to_timestamp(la), string_to_array(nets, ' ')"
        " FROM unnest(string_to_array($1, ' ')::uuid[], $2::text::bigint[],"
        " string_to_array($3, ' '), $4::text::bigint[], $5::text::bigint[],"
        " $6::text::bigint[], $7::text::bigint[], $8::text::bigint[], $9::text::bigint[],"
        " $10::text::bigint[], $11::text::bigint[],"
        " $12::float8[], $13::float8[], $14::float8[], $15::float8[], $16::text[])"
        " AS u(k, m, a, n, s2, s3, s4, s5, af, ti, tout, ls, lm, fa, la, nets)"
        " ON CONFLICT (key_id, minute) DO UPDATE SET"
        " requests = r.requests + EXCLUDED.requests,"
        " status_2xx = r.status_2xx + EXCLUDED.status_2xx,"
        " status_3xx = r.status_3xx + EXCLUDED.status_3xx,"
        " status_4xx = r.status_4xx + EXCLUDED.status_4xx,"
        " status_5xx = r.status_5xx + EXCLUDED.status_5xx,"
        " auth_failures = r.auth_failures + EXCLUDED.auth_failures,"
        f" tokens_in = least(r.tokens_in + EXCLUDED.tokens_in, {TOKENS_CAP}),"
        f" tokens_out = least(r.tokens_out + EXCLUDED.tokens_out, {TOKENS_CAP}),"
        f" latency_sum_ms = least(r.latency_sum_ms + EXCLUDED.latency_sum_ms, {LATENCY_SUM_CAP}),"
        " latency_max_ms = greatest(r.latency_max_ms, EXCLUDED.latency_max_ms),"
        " first_at = least(r.first_at, EXCLUDED.first_at),"
        " last_at = greatest(r.last_at, EXCLUDED.last_at),"
        f" networks = {_MERGE_NETWORKS}",
        " ".join([r.key_id for r in rows]),
        int_array([r.minute for r in rows]),
        " ".join([r.account_id for r in rows]),  # account ids have no spaces (contract)
        int_array([r.requests for r in rows]),
        int_array([r.status_2xx for r in rows]),
        int_array([r.status_3xx for r in rows]),
        int_array([r.status_4xx for r in rows]),
        int_array([r.status_5xx for r in rows]),
        int_array([r.auth_failures for r in rows]),
        int_array(capped([r.tokens_in for r in rows], TOKENS_CAP)),
        int_array(capped([r.tokens_out for r in rows], TOKENS_CAP)),
        capped([r.latency_sum_ms for r in rows], LATENCY_SUM_CAP),
        [r.latency_max_ms for r in rows],
        [r.first_at for r in rows],
        [r.last_at for r in rows],
        [" ".join(sorted(r.networks)[:MAX_NETWORKS_PER_MINUTE]) for r in rows],
    )


async def forget_seen_before(conn: Any, minute: int) -> str:
    """Prune the dedup horizon: record ids of minutes before `minute` (epoch minutes)."""
    status: str = await conn.execute(
        "DELETE FROM seen_batches WHERE minute < to_timestamp($1::bigint * 60)", minute
    )
    return status
