"""keys_last_use: what learning each key's last use from usage.records costs the key service.

The key service reduces each record to its use (`decode_use`), a batch to the latest use
per key (`latest_uses`) and of each rotated-out secret (none in this traffic), and writes
the batch with one statement (`record_last_used`; the second writes nothing here).
Both are timed on realistic records (~400 bytes, 5,000 keys with Zipf-distributed traffic,
batches of 5,000 as the consumer takes them): decoding and folding as CPU time in this
process, the statement as wall time against a scratch database with the key service's
tables and those keys. The baseline is the bare orjson parse of the same records: the
least any consumer of the topic spends on a record.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg
import orjson

from bench.harness import BenchContext, Figure, benchmark
from bench.usage_support import key_pool, scratch_database, traffic
from servicekit import db
from services.keys.adapters import queries
from services.keys.app.activity import latest_uses
from services.keys.bootstrap import MIGRATIONS
from services.keys.entrypoints.last_use import decode_use

KEYS: Final = 5_000
BATCH: Final = 5_000
EVENT_RATE: Final = 50_000.0


@benchmark("keys_last_use")
async def keys_last_use(ctx: BenchContext) -> list[Figure]:
    count = ctx.scale(500_000, 50_000)
    keys = key_pool(KEYS, f"bench-{uuid.uuid4().hex[:6]}")
    start = datetime.now(UTC) - timedelta(seconds=count / EVENT_RATE + 60)
    values = [value for _, value in traffic(keys, count, EVENT_RATE, start)]
    batches = [values[i : i + BATCH] for i in range(0, count, BATCH)]
    ctx.note(records=count, keys=KEYS, batch=BATCH, key_distribution="zipf(1.0)")

    began = time.process_time()
    for value in values:
        orjson.loads(value)
    bare_us = (time.process_time() - began) / count * 1e6

    began = time.process_time()
    # As the entrypoint does: each key's last use, and its rotated-out secret's (none here).
    folded, previous = [], []
    for batch in batches:
        uses = [decode_use(value) for value in batch]
        folded.append(latest_uses(uses))
        previous.append(latest_uses(uses, previous_secret=True))
    fold_us = (time.process_time() - began) / count * 1e6
    ctx.note(distinct_keys_per_batch=round(sum(map(len, folded)) / len(folded)))

    async with scratch_database("keys_last_use_bench") as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            await db.migrate(pool, MIGRATIONS)
            await _hold(pool, keys)
            began = time.perf_counter()
            for latest, latest_previous in zip(folded, previous, strict=True):
                await queries.record_last_used(pool, latest)
                await queries.record_previous_secret_used(pool, latest_previous)
            statement_ms = (time.perf_counter() - began) / len(folded) * 1e3
            marked = await pool.fetchval("SELECT count(*) FROM key_last_used")
        finally:
            await pool.close()
    used = {key for latest in folded for key, _ in latest}
    if marked != len(used):
        raise AssertionError(f"{marked} keys marked used, {len(used)} were")
    total_us = fold_us + statement_ms * 1e3 / BATCH
    return [
        ctx.figure("records_per_s_one_core", 1e6 / total_us, "rec/s", target=50_000),
        ctx.figure("us_per_record", total_us, "us", better="lower"),
        ctx.figure("decode_fold_us_per_record", fold_us, "us", better="lower"),
        ctx.figure("bare_parse_us_per_record", bare_us, "us", better="lower"),
        ctx.figure("statement_ms_per_batch", statement_ms, "ms", better="lower"),
    ]


async def _hold(pool: asyncpg.Pool, keys: list[tuple[str, str]]) -> None:
    """The keys in the key service's read model, as their creation would leave them."""
    await pool.execute(
        "INSERT INTO key_state (key_id, account_id, name, environment, scopes, prefix, status,"
        " created_at, updated_at, version)"
        " SELECT k, a, 'bench', 'production', '{}', 'ig_live_Ab3d', 'active', now(), now(), 1"
        " FROM unnest($1::uuid[], $2::text[]) AS u(k, a)",
        [key_id for key_id, _ in keys],
        [account for _, account in keys],
    )
