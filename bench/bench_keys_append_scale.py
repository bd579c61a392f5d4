"""keys_append_scale: `keys_append`'s writers against an event store that already holds
10^4, 10^6 (and, on request, 10^7) events: the append rate must not fall with the store's
size (issue 14: within 20 % across the sizes).

Each size gets a scratch keys database of its own on the stack's server
(`bench_keys_scale`, dropped afterwards), migrated like the service's, then filled
straight in SQL (generate_series, not through the service): keys of ten events each
(KeyCreated, then KeyUpdated), their key_state rows, every event sequenced (event_positions)
and the publisher's checkpoint at the last one, so that none of the filler is published.
A keys process of the benchmark's own, on that database, is its publisher. The writers
are `keys_append`'s (16, through the use cases and the unit of work), fewer events each
than there (`EVENTS_PER_WRITER`); every event they write must reach `keys.events`.

Sizes: `KEYS_APPEND_SCALE_SIZES` (comma-separated, e.g. `10000,1000000,10000000`);
default 10^4 and 10^6 (`--quick`: 10^3 and 10^5). Filling 10^7 events takes several
minutes and about 6 GB of disk. The figures: `append_events_per_s_<size>` for each size,
the largest next to the smallest as its baseline (target: at least 80 % of it).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Final

import asyncpg

from bench import keys_support as ks
from bench.bench_keys_append import KEYS_PER_WRITER, WRITERS, _keys_writers, plan
from bench.harness import BenchContext, Figure, benchmark
from servicekit import db
from services.keys.bootstrap import MIGRATIONS

DATABASE: Final = "bench_keys_scale"
EVENTS_PER_KEY: Final = 10
EVENTS_PER_WRITER: Final = 150
FILL_CHUNK: Final = 1_000_000
"""Events per fill statement (one transaction each), so a large fill commits as it goes."""

_FILL_EVENTS = """
INSERT INTO event_rows (event_id, key_id, account_id, stream_version, event_type,
    occurred_at, actor, correlation_id, causation_id, data)
SELECT gen_random_uuid(),
    md5('bench-scale-key:' || (n / $3::bigint))::uuid,
    'bench-scale-filler', n % $3::bigint + 1,
    CASE WHEN n % $3::bigint = 0 THEN 'KeyCreated' ELSE 'KeyUpdated' END,
    now(), '{"type":"system","id":"bench-scale","ip":null,"user_agent":null}',
    'bench-scale:' || n, NULL,
    CASE WHEN n % $3::bigint = 0 THEN
        '{"name":"filler","description":null,"environment":"production",'
        '"scopes":["keys:verify"],"rate_limit_per_hour":null,"expires_at":null,'
        '"prefix":"ig_live_Fill"}'::jsonb
    ELSE jsonb_build_object('before', jsonb_build_object('name', 'filler-' || (n - 1)),
        'after', jsonb_build_object('name', 'filler-' || n)) END
FROM generate_series($1::bigint, $2::bigint - 1) AS n
ORDER BY n
"""
_FILL_STATES = """
INSERT INTO key_state (key_id, account_id, name, environment, scopes, prefix, status,
    created_at, updated_at, version)
SELECT md5('bench-scale-key:' || k)::uuid,
    'bench-scale-filler', 'filler-' || k, 'production', ARRAY['keys:verify'],
    'ig_live_Fill', 'active', now(), now(), $3::bigint
FROM generate_series($1::bigint / $3::bigint, $2::bigint / $3::bigint - 1) AS k
"""


def _sizes(ctx: BenchContext) -> list[int]:
    raw = os.environ.get("KEYS_APPEND_SCALE_SIZES")
    if raw:
        return sorted({int(float(s)) for s in raw.split(",") if s.strip()})
    return [ctx.scale(10_000, 1_000), ctx.scale(1_000_000, 100_000)]


@benchmark("keys_append_scale")
async def keys_append_scale(ctx: BenchContext) -> list[Figure]:
    sizes = _sizes(ctx)
    per_writer = ctx.scale(EVENTS_PER_WRITER, 40)
    steps = plan(per_writer, KEYS_PER_WRITER if not ctx.quick else 4)
    ctx.note(sizes=sizes, writers=WRITERS, events_per_writer=per_writer)
    stack = ks.endpoints(ctx.bootstrap)
    rates: dict[int, float] = {}
    fills: dict[str, float] = {}
    with ks.workdir("keys-append-scale") as work:
        for size in sizes:
            dsn = await _scratch_database(stack)
            try:
                fills[str(size)] = round(await _fill(dsn, size), 1)
                # The scratch database's publisher: a keys process of our own on it.
                async with ks.keys_process(
                    stack, work, f"keys-scale-{size}", KEYS_DATABASE_URL=dsn
                ):
                    account = f"bench-scale-{uuid.uuid4().hex[:10]}"
                    run = await _keys_writers(ctx, stack, account, steps, dsn=dsn)
                rates[size] = run.per_s
                ctx.note(**{f"size_{size}": ctx.params.pop("keys_cpu", None)})
            finally:
                await _drop(stack)
    ctx.note(fill_seconds=fills)
    smallest, largest = sizes[0], sizes[-1]
    figures = [
        Figure(f"append_events_per_s_{size}", rate, "events/s") for size, rate in rates.items()
    ]
    figures.append(
        Figure(
            f"append_events_per_s_{largest}_vs_{smallest}",
            rates[largest],
            "events/s",
            target=round(0.8 * rates[smallest], 1),
            baseline=rates[smallest],
        )
    )
    return figures


async def _scratch_database(stack: ks.StackEndpoints) -> str:
    await _drop(stack)
    admin = await asyncpg.connect(stack.server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await admin.close()
    dsn = stack.server_url.rsplit("/", 1)[0] + f"/{DATABASE}"
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        await db.migrate(pool, MIGRATIONS)
    finally:
        await pool.close()
    return dsn


async def _drop(stack: ks.StackEndpoints) -> None:
    admin = await asyncpg.connect(stack.server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    finally:
        await admin.close()


async def _fill(dsn: str, size: int) -> float:
    """`size` events (keys of EVENTS_PER_KEY), sequenced and checkpointed; seconds taken."""
    began = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        size -= size % EVENTS_PER_KEY
        for start in range(0, size, FILL_CHUNK):
            end = min(start + FILL_CHUNK, size)
            async with conn.transaction():
                await conn.execute(_FILL_EVENTS, start, end, EVENTS_PER_KEY)
                await conn.execute(_FILL_STATES, start, end, EVENTS_PER_KEY)
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO event_positions (position, event_row)"
                " SELECT id, id FROM event_rows ORDER BY id"
            )
            await conn.execute("TRUNCATE events_unsequenced")
            await conn.execute(
                "INSERT INTO publisher_checkpoint (name, position)"
                " SELECT 'keys.events', coalesce(max(position), 0) FROM event_positions"
            )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - began
