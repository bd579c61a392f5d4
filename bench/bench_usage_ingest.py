"""usage_ingest: usage records in, rollups stored and offsets committed, end to end.

A usage process of its own (own database, consumer group and scratch topics) reads
records that were put on the topic before it started, as fast as it can: the rate from
its first counted record to the last one in PostgreSQL is the sustained ingest rate. In
the same run a bare aiokafka consumer reads the same topic: the ceiling. Records are
realistic (~400 bytes, 5,000 keys with Zipf-distributed traffic (`--keys N`: N keys), event
times 50,000/s apart); the cold-start spike threshold is lifted so the run measures ingestion, not a
flood of first-minute alerts of brand-new keys.

The usage service is deployed as `make up` runs it: the ingest process and the limit
counter's process (USAGE_ROLE ingest and limits; docs/limits.md "Two processes"), both
reading the records, each in its own consumer group; the CPU of each is reported apart
(`usage_cpu_us_per_record`: the ingest's; `limit_counter_cpu_us_per_record`). With
`USAGE_INGEST_ONE_PROCESS=1` the same records are then read by one process running both
(USAGE_ROLE=all, the former deployment): the comparison in the same run.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.bench_audit_ingest import cpu_by_process, cpu_used
from bench.harness import BenchContext, Figure, benchmark
from bench.scratch_topic import scratch_topic
from bench.usage_support import (
    UsageProcess,
    connected,
    key_pool,
    positions,
    produce,
    traffic,
    usage_process,
)

PARTITIONS: Final = 3
KEYS: Final = 5_000
EVENT_RATE: Final = 50_000.0
DEADLINE_S: Final = 600.0


@benchmark("usage_ingest")
async def usage_ingest(ctx: BenchContext) -> list[Figure]:
    count = ctx.scale(1_000_000, 100_000)
    keys = ctx.keys(KEYS)
    ctx.note(records=count, keys=keys, partitions=PARTITIONS, key_distribution="zipf(1.0)")
    start = datetime.now(UTC) - timedelta(seconds=count / EVENT_RATE + 60)
    built = time.perf_counter()
    messages = traffic(key_pool(keys, f"bench-{uuid.uuid4().hex[:6]}"), count, EVENT_RATE, start)
    ctx.note(
        build_s=round(time.perf_counter() - built, 1),
        record_bytes=round(sum(len(v) for _, v in messages) / count),
    )
    async with (
        scratch_topic(ctx.bootstrap, "bench.usage.records", PARTITIONS) as records,
        scratch_topic(ctx.bootstrap, "bench.usage.events", PARTITIONS) as events,
    ):
        ctx.note(produce_s=round(await produce(ctx.bootstrap, records, messages), 1))
        del messages
        bare = await bare_consumer_rate(ctx.bootstrap, records, count)
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "usage.log"
            async with usage_process(
                ctx.bootstrap, records, events, log, USAGE_SPIKE_COLD_VOLUME="1000000000"
            ) as usage:
                rate, cpu_us, split = await ingest_rate(usage, count)
                counter_cpu_us = split.get("usage-limits", 0.0)
                ctx.note(load_avg_1m_at_end=os.getloadavg()[0])
                ctx.note(cpu_us_per_record=split)
                committed_s = await wait_committed(ctx.bootstrap, usage.group, records)
                ctx.note(offsets_committed_after_s=round(committed_s, 2))
        one = (
            await ingest_one_process(ctx.bootstrap, records, events, count)
            if os.environ.get("USAGE_INGEST_ONE_PROCESS") == "1"
            else None
        )
    figures = [
        ctx.figure("ingest_records_per_s", rate, "rec/s", target=50_000),
        ctx.figure("bare_consumer_records_per_s", bare, "rec/s"),
        ctx.figure("ingest_share_of_bare_consumer", rate / bare, "ratio", target=0.5),
        ctx.figure("usage_cpu_us_per_record", cpu_us, "us", better="lower"),
        ctx.figure("limit_counter_cpu_us_per_record", counter_cpu_us, "us", better="lower"),
        ctx.figure("postgres_cpu_us_per_record", split["postgres"], "us", better="lower"),
    ]
    if one is not None:
        one_rate, one_cpu, one_split = one
        ctx.note(cpu_us_per_record_one_process=one_split)
        figures += [
            ctx.figure("one_process_records_per_s", one_rate, "rec/s"),
            ctx.figure("one_process_share_of_bare", one_rate / bare, "ratio"),
            ctx.figure("one_process_cpu_us_per_record", one_cpu, "us", better="lower"),
        ]
    return figures


async def ingest_one_process(
    bootstrap: str, records: str, events: str, count: int
) -> tuple[float, float, dict[str, float]]:
    """`ingest_rate` of one usage process running the ingest and the limit counter."""
    with tempfile.TemporaryDirectory() as tmp:
        async with usage_process(
            bootstrap, records, events, Path(tmp) / "usage.log",
            USAGE_SPIKE_COLD_VOLUME="1000000000", USAGE_ROLE="all",
        ) as usage:  # fmt: skip
            return await ingest_rate(usage, count)


async def bare_consumer_rate(bootstrap: str, topic: str, count: int) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        # As kafka_baseline: the clock starts once assigned (aiokafka has no event for it).
        while not consumer.assignment():  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        began = time.perf_counter()
        read = 0
        while read < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            read += sum(len(batch) for batch in batches.values())
            if time.perf_counter() - began > DEADLINE_S:
                raise TimeoutError("bare consumer too slow")
        return read / (time.perf_counter() - began)
    finally:
        await consumer.stop()


async def ingest_rate(usage: UsageProcess, count: int) -> tuple[float, float, dict[str, float]]:
    """(records/s from the first counted record to the last, CPU us per record in the
    ingest process, CPU us per record by process: usage (the ingest), usage-limits (the
    limit counter's process, where it has one), its database's backends, the broker).
    Progress is read on one connection (no backend started for each poll) from the
    ingest's stored offsets (`positions`)."""
    began = time.perf_counter()
    first_at = first_count = 0.0
    cpu_first = counter_first = 0.0
    database = usage.database.rsplit("/", 1)[-1].split("?")[0]
    split_first: dict[int, tuple[str, float]] = {}
    async with connected(usage.database) as conn:
        while True:
            done = await positions(conn, "record_offsets")
            now = time.perf_counter()
            if done and not first_at:
                first_at, first_count, cpu_first = now, done, usage.cpu_seconds()
                counter_first = usage.counter_cpu_seconds() if usage.counter else 0.0
                split_first = cpu_by_process(usage.pid, "usage", database)
            if done >= count:
                break
            if now - began > DEADLINE_S:
                raise TimeoutError(f"only {done} of {count} records counted")
            await asyncio.sleep(0.1)
    records = done - first_count
    if not records:  # the ingest starts reading while the counter's process starts
        raise RuntimeError("all records were stored before both processes were ready: too few")
    cpu = usage.cpu_seconds() - cpu_first
    used = cpu_used(split_first, cpu_by_process(usage.pid, "usage", database))
    if usage.counter:
        used["usage-limits"] = usage.counter_cpu_seconds() - counter_first
    split = {r: round(s / records * 1e6, 1) for r, s in used.items() if r != "audit"}
    return records / (now - first_at), cpu / records * 1e6, split


async def wait_committed(bootstrap: str, group: str, topic: str) -> float:
    """Seconds until the group's committed offsets reach the end of every partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    began = time.perf_counter()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(partitions)
        while True:
            offsets = await admin.list_consumer_group_offsets(group)
            if all(offsets.get(tp) is not None and offsets[tp].offset >= ends[tp] for tp in ends):
                return time.perf_counter() - began
            if time.perf_counter() - began > 60:
                raise TimeoutError("offsets not committed")
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()
        await admin.close()
