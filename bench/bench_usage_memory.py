"""usage_memory: resident memory of the usage ingest process (and, apart, of the limit
counter's process) with 100,000 active keys (`--keys N`:
N keys; the target is 300 MB up to 100,000 keys, 1.5 GB at 1,000,000).

Its own process reads 100,000 KeyCreated events (each with an hourly limit, so every key
carries its trailing-hour counters) and three records of each key within a few minutes;
once all are counted, every key's detector state and read-model entry is in memory.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from bench.harness import BenchContext, Figure, benchmark
from bench.scratch_topic import scratch_topic
from bench.usage_support import (
    counted,
    directory_size,
    key_events,
    key_pool,
    poll_until,
    produce,
    usage_process,
    usage_record,
)

PARTITIONS: Final = 3
MB: Final = 1024 * 1024


@benchmark("usage_memory")
async def usage_memory(ctx: BenchContext) -> list[Figure]:
    import random  # noqa: PLC0415 - only here

    count = ctx.keys(ctx.scale(100_000, 10_000))
    per_key = 3
    ctx.note(active_keys=count, records_per_key=per_key)
    keys = key_pool(count, f"bench-{uuid.uuid4().hex[:6]}")
    start = datetime.now(UTC) - timedelta(minutes=10)
    rng = random.Random(5)  # noqa: S311 - synthetic traffic
    records = (  # made as they are sent: a million keys' records are not held at once
        usage_record(key, start + timedelta(seconds=(i * 3 + n) * 0.002), rng)
        for n in range(per_key)
        for i, key in enumerate(keys)
    )
    total = count * per_key
    async with (
        scratch_topic(ctx.bootstrap, "bench.usage.records", PARTITIONS) as records_topic,
        scratch_topic(ctx.bootstrap, "bench.usage.events", PARTITIONS) as events_topic,
    ):
        with tempfile.TemporaryDirectory() as tmp:
            async with usage_process(
                ctx.bootstrap, records_topic, events_topic, Path(tmp) / "usage.log",
                USAGE_SPIKE_COLD_VOLUME="1000000000",
            ) as usage:  # fmt: skip
                idle = usage.rss_bytes()
                counter_idle = usage.counter_rss_bytes()

                async def directory_loaded() -> bool:
                    return await directory_size(usage.database) >= count

                async def all_counted() -> bool:
                    return await counted(usage.database) >= total

                # The key events go out once the idle figures are taken (sent before the
                # process starts, a fast machine folded them all before it was ready).
                began = time.perf_counter()
                await produce(ctx.bootstrap, events_topic, key_events(keys, start, limit=100_000))
                await poll_until(directory_loaded, timeout=3600)
                directory_s = time.perf_counter() - began
                with_directory = usage.rss_bytes()
                await produce(ctx.bootstrap, records_topic, records)
                await poll_until(all_counted, timeout=3600)
                await asyncio.sleep(2)
                loaded = usage.rss_bytes()
                counter_loaded = usage.counter_rss_bytes()
    ctx.note(
        idle_rss_mb=round(idle / MB, 1),
        limit_counter_idle_rss_mb=round(counter_idle / MB, 1),
        limit_counter_loaded_rss_mb=round(counter_loaded / MB, 1),
        directory_rss_mb=round(with_directory / MB, 1),
        directory_load_s=round(directory_s, 1),
        key_events_per_s=round(count / directory_s),
    )
    target = 300 if count <= 100_000 else 1500
    name = "rss_mb_100k_active_keys" if count == 100_000 else f"rss_mb_{count}_active_keys"
    return [
        ctx.figure(name, loaded / MB, "MB", target=target, better="lower"),
        # The target, written when one process did both, held to the two together.
        ctx.figure(
            f"{name}_with_limit_counter",
            (loaded + counter_loaded) / MB,
            "MB",
            target=target,
            better="lower",
        ),
    ]
