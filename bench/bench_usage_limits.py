"""usage_limits and usage_limit_latency: the limit counter of the usage service.

**usage_limits**: records put on a scratch topic before a usage service of its own starts
(5,000 keys, Zipf, every key carrying a per-minute and per-hour rate limit and a monthly
token budget, none crossed: each key's clear state is refreshed at most once a second);
the rate at which the limit counter takes them, from the moment the key directory holds
every key to the last record, next to a bare aiokafka consumer of the same topic in the
same run. The ingest process reads an idle topic (the counter's is
USAGE_LIMITS_RECORDS_TOPIC), and the CPU is the counter process's own.

**usage_limit_latency**: usage.records carries RATE records/s of such keys (event time =
now) while, every half second, one record of a fresh key with `rate_limit_per_minute: 1`
crosses its limit; one sample is the time from that record's publish to its
`rate_limited` state read on usage.limits. Three phases, a deployment each: the counter
alone (the ingest process reading an idle topic: the counter scaled apart), the service as
deployed (the ingest process and the counter process on the same topic), and the counter
alone at LIGHT_RATE. A state not read within GIVE_UP_S counts as GIVE_UP_S (a lower bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.bench_usage_alerts import steady_load
from bench.bench_usage_ingest import bare_consumer_rate
from bench.harness import LOAD_KEPT, BenchContext, Figure, benchmark
from bench.scratch_topic import scratch_topic
from bench.usage_support import (
    connected,
    directory_size,
    key_events,
    key_pool,
    poll_until,
    positions,
    produce,
    traffic,
    usage_process,
    usage_record,
)
from contracts import TokenBudget

PARTITIONS: Final = 3
KEYS: Final = 5_000
EVENT_RATE: Final = 50_000.0
RATE: Final = 10_000
LIGHT_RATE: Final = 2_000
"""A third phase at a rate this shared 2-core machine sustains: the latency without a backlog."""
GIVE_UP_S: Final = 120.0
LIMITS: Final[dict[str, Any]] = {
    "rate_limit_per_minute": 1_000_000,
    "token_budget": TokenBudget(tokens=10**15, period="month"),
}
HOURLY: Final = 10_000_000
DEADLINE_S: Final = 600.0


@benchmark("usage_limits")
async def usage_limits(ctx: BenchContext) -> list[Figure]:
    count = ctx.scale(300_000, 30_000)
    keys = key_pool(KEYS, f"bench-{uuid.uuid4().hex[:6]}")
    ctx.note(
        records=count,
        keys=KEYS,
        partitions=PARTITIONS,
        key_distribution="zipf(1.0)",
        limits="per minute, per hour, monthly token budget on every key, none crossed",
    )
    start = datetime.now(UTC) - timedelta(seconds=count / EVENT_RATE + 60)
    messages = traffic(keys, count, EVENT_RATE, start)
    async with (
        scratch_topic(ctx.bootstrap, "bench.usage.records", PARTITIONS) as records,
        scratch_topic(ctx.bootstrap, "bench.usage.idle", PARTITIONS) as idle,
        scratch_topic(ctx.bootstrap, "bench.usage.events", PARTITIONS) as events,
        scratch_topic(ctx.bootstrap, "bench.usage.limits", PARTITIONS) as limits,
    ):
        created = start - timedelta(days=1)
        await produce(ctx.bootstrap, events, key_events(keys, created, limit=HOURLY, **LIMITS))
        ctx.note(produce_s=round(await produce(ctx.bootstrap, records, messages), 1))
        del messages
        bare = await bare_consumer_rate(ctx.bootstrap, records, count)
        with tempfile.TemporaryDirectory() as tmp:
            async with usage_process(
                ctx.bootstrap, idle, events, Path(tmp) / "usage.log",
                USAGE_LIMITS_RECORDS_TOPIC=records, USAGE_LIMITS_TOPIC=limits,
            ) as usage:  # fmt: skip
                await poll_until(lambda: _known(usage.database, KEYS), interval=0.05)
                began, cpu_base = time.perf_counter(), usage.counter_cpu_seconds()
                async with connected(usage.database) as conn:  # one, not one a poll
                    base = await positions(conn, "limit_offsets")
                    while (done := await positions(conn, "limit_offsets")) < count:
                        if time.perf_counter() - began > DEADLINE_S:
                            raise TimeoutError(f"only {done} of {count} records counted")
                        await asyncio.sleep(0.1)
                seconds = time.perf_counter() - began
                cpu_us = (usage.counter_cpu_seconds() - cpu_base) / (done - base) * 1e6
                ctx.note(counted_before_clock=base, load_avg_at_end=os.getloadavg()[0])
    rate = (count - base) / seconds
    return [
        ctx.figure("limit_counter_records_per_s", rate, "rec/s", target=RATE),
        ctx.figure("bare_consumer_records_per_s", bare, "rec/s"),
        ctx.figure("limit_counter_share_of_bare_consumer", rate / bare, "ratio"),
        ctx.figure("limit_counter_cpu_us_per_record", cpu_us, "us", better="lower"),
    ]


async def _known(database: str, count: int) -> bool:
    """The limit counter's read model holds `count` keys (the ingest's may lag)."""
    return await directory_size(database, "limit_directory") >= count


@benchmark("usage_limit_latency")
async def usage_limit_latency(ctx: BenchContext) -> list[Figure]:
    probes = ctx.scale(40, 10)
    account = f"bench-{uuid.uuid4().hex[:6]}"
    keys = key_pool(KEYS, account)
    ctx.note(rate_target=RATE, keys=KEYS, probes_per_phase=probes,
             crossing="the first record of a key with rate_limit_per_minute 1")  # fmt: skip
    figures: list[Figure] = []
    phases = (
        ("alone", RATE, "_counter_alone"),
        ("deployed", RATE, "_deployed"),
        ("alone", LIGHT_RATE, "_counter_alone_light"),
    )
    for phase, rate, label in phases:
        crossing = key_pool(probes, account)
        async with (
            scratch_topic(ctx.bootstrap, "bench.usage.records", PARTITIONS) as records,
            scratch_topic(ctx.bootstrap, "bench.usage.idle", PARTITIONS) as idle,
            scratch_topic(ctx.bootstrap, "bench.usage.events", PARTITIONS) as events,
            scratch_topic(ctx.bootstrap, "bench.usage.limits", PARTITIONS) as limits,
        ):
            created = datetime.now(UTC) - timedelta(days=1)
            await produce(ctx.bootstrap, events, key_events(keys, created, limit=HOURLY, **LIMITS))
            await produce(
                ctx.bootstrap, events, key_events(crossing, created, rate_limit_per_minute=1)
            )
            analytic = idle if phase == "alone" else records
            with tempfile.TemporaryDirectory() as tmp:
                async with usage_process(
                    ctx.bootstrap, analytic, events, Path(tmp) / "usage.log",
                    USAGE_LIMITS_RECORDS_TOPIC=records, USAGE_LIMITS_TOPIC=limits,
                    USAGE_SPIKE_COLD_VOLUME="1000000000",
                ) as usage:  # fmt: skip
                    await poll_until(lambda: _known(usage.database, KEYS + probes))
                    stop = asyncio.Event()
                    load = asyncio.create_task(
                        steady_load(ctx.bootstrap, records, keys, stop, rate)
                    )
                    await asyncio.sleep(3)  # warm up
                    load_avg = os.getloadavg()[0]
                    latencies, missing = await probe(ctx.bootstrap, records, limits, crossing)
                    stop.set()
                    sent, seconds = await load
            ctx.note(**{f"load{label}_avg_1m": load_avg, f"missing{label}": missing})
            cuts = statistics.quantiles(latencies, n=100)
            figures += [
                ctx.figure(f"limit_latency{label}_p50_ms",
                           statistics.median(latencies) * 1000, "ms", better="lower"),
                ctx.figure(f"limit_latency{label}_p99_ms", cuts[98] * 1000, "ms",
                           target=1000, better="lower"),
                ctx.figure(f"load{label}_records_per_s", sent / seconds, "rec/s",
                           target=rate * LOAD_KEPT),
            ]  # fmt: skip
    return figures


async def probe(
    bootstrap: str, records: str, limits: str, crossing: list[tuple[str, str]]
) -> tuple[list[float], int]:
    """One crossing record per key, half a second apart; the seconds from each one's
    publish to its key's rate_limited state on usage.limits, and how many never came."""
    states = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await states.start()
    partitions = [TopicPartition(limits, p) for p in range(PARTITIONS)]
    states.assign(partitions)
    await states.seek_to_beginning(*partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    await producer.start()
    sent_at: dict[bytes, float] = {}
    seen: dict[bytes, float] = {}
    rng = random.Random(5)  # noqa: S311 - synthetic traffic

    async def read() -> None:
        while len(seen) < len(crossing):
            for batch in (await states.getmany(timeout_ms=100)).values():
                for message in batch:
                    key = message.key
                    if (
                        key in sent_at
                        and key not in seen
                        and orjson.loads(message.value or b"{}").get("state") == "rate_limited"
                    ):
                        seen[key] = time.perf_counter()

    reader = asyncio.create_task(read())
    try:
        for key in crossing:
            key_bytes, value = usage_record(key, datetime.now(UTC), rng, status=200)
            sent_at[key_bytes] = time.perf_counter()
            await producer.send(records, value, key=key_bytes)
            await asyncio.sleep(0.5)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, GIVE_UP_S)
    finally:
        reader.cancel()
        await producer.stop()
        await states.stop()
    # A state that never came within GIVE_UP_S counts as that long: a lower bound.
    given_up = time.perf_counter()
    return [seen.get(k, given_up) - sent_at[k] for k in sent_at], len(sent_at) - len(seen)
