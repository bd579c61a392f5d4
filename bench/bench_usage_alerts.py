"""usage_alert_latency: from the publish of the first anomalous record to the alert on
`usage.alerts`, while the service ingests a steady stream of normal traffic.

A usage service of its own (an ingest process and a limit counter process, as `make up`
deploys it) reads a scratch topic fed at `RATE` records/s (event times
following the clock). Every half second one record of a key that was disabled is sent
(the anomaly: `disabled_key_in_use`, critical, one record suffices), and the time until
its alert is read back from `usage.alerts` is one sample. If the producer cannot reach
`RATE` on this machine (it shares the two cores with the broker, PostgreSQL and the
service), the rate achieved is reported next to the latency. A second phase at
`LIGHT_RATE`, which the service sustains here, gives the latency without a backlog.
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
from typing import Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.harness import LOAD_KEPT, BenchContext, Figure, benchmark
from bench.scratch_topic import scratch_topic
from bench.usage_support import (
    FAST_PRODUCER,
    RecordStamper,
    counted,
    directory_size,
    key_events,
    key_pool,
    limit_positions,
    poll_until,
    produce,
    usage_process,
    usage_record,
)
from contracts import USAGE_ALERTS

PARTITIONS: Final = 3
KEYS: Final = 5_000
RATE: Final = 50_000
LIGHT_RATE: Final = 5_000
"""A second run at a rate this 2-core machine sustains: the latency when not backlogged."""
TICK: Final = 0.05
"""The load is sent in slices of RATE x TICK records, paced on the clock."""


@benchmark("usage_alert_latency")
async def usage_alert_latency(ctx: BenchContext) -> list[Figure]:
    probes = ctx.scale(40, 10)
    account = f"bench-{uuid.uuid4().hex[:6]}"
    keys = key_pool(KEYS, account)
    leaked = key_pool(2 * probes, account)
    ctx.note(rate_target=RATE, light_rate=LIGHT_RATE, keys=KEYS, probes_per_rate=probes)
    ctx.note(anomaly="disabled_key_in_use (one record of a disabled key)")
    figures: list[Figure] = []
    async with (
        scratch_topic(ctx.bootstrap, "bench.usage.records", PARTITIONS) as records,
        scratch_topic(ctx.bootstrap, "bench.usage.events", PARTITIONS) as events,
    ):
        created = datetime.now(UTC) - timedelta(days=1)
        await produce(ctx.bootstrap, events, key_events(leaked, created, disabled=True))
        with tempfile.TemporaryDirectory() as tmp:
            async with usage_process(
                ctx.bootstrap, records, events, Path(tmp) / "usage.log",
                USAGE_SPIKE_COLD_VOLUME="1000000000",
            ) as usage:  # fmt: skip
                await poll_until(lambda: _known(usage.database, len(leaked)))
                for rate, label, share in ((RATE, "", leaked[:probes]),
                                           (LIGHT_RATE, "_light", leaked[probes:])):  # fmt: skip
                    stop = asyncio.Event()
                    load = asyncio.create_task(
                        steady_load(ctx.bootstrap, records, keys, stop, rate)
                    )
                    await asyncio.sleep(3)  # warm up
                    latencies = await probe(ctx.bootstrap, records, share)
                    stop.set()
                    sent, seconds = await load
                    ctx.note(**{f"load{label}_records_sent": sent,
                                f"load{label}_avg_1m": os.getloadavg()[0]})  # fmt: skip
                    cuts = statistics.quantiles(latencies, n=20)
                    figures += [
                        ctx.figure(f"alert_latency{label}_p50_ms",
                                   statistics.median(latencies) * 1000, "ms", better="lower"),
                        ctx.figure(f"alert_latency{label}_p95_ms", cuts[18] * 1000, "ms",
                                   target=2000 if not label else None, better="lower"),
                        ctx.figure(f"load{label}_records_per_s", sent / seconds, "rec/s",
                                   target=None if label else rate * LOAD_KEPT),
                    ]  # fmt: skip
                    await poll_until(lambda: _caught_up(usage.database))
    return figures


async def _caught_up(database: str) -> bool:
    """No backlog left before the next phase, in the ingest nor in the limit counter (its
    own process: a backlog of it would take CPU from the next phase): two reads a second
    apart agree."""
    first = (await counted(database), await limit_positions(database))
    await asyncio.sleep(1)
    return (await counted(database), await limit_positions(database)) == first


async def _known(database: str, count: int) -> bool:
    return await directory_size(database) >= count


async def steady_load(
    bootstrap: str, topic: str, keys: list[tuple[str, str]], stop: asyncio.Event, rate: int
) -> tuple[int, float]:
    """Normal traffic at `rate` until `stop`; returns (records sent, seconds)."""
    stamper = RecordStamper(keys)
    per_tick = int(rate * TICK)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **FAST_PRODUCER)
    await producer.start()
    sent = 0
    began = time.perf_counter()
    try:
        while not stop.is_set():
            futures = [
                await producer.send(topic, value, key=key)
                for key, value in stamper.batch(per_tick, datetime.now(UTC))
            ]
            sent += per_tick
            await asyncio.gather(*futures)
            ahead = began + sent / rate - time.perf_counter()
            await asyncio.sleep(max(0.0, ahead))
        return sent, time.perf_counter() - began
    finally:
        await producer.stop()


async def probe(bootstrap: str, topic: str, leaked: list[tuple[str, str]]) -> list[float]:
    """Send one record of each leaked key, half a second apart; the seconds until each
    one's alert is read on usage.alerts."""
    alerts = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await alerts.start()
    partitions = [
        TopicPartition(USAGE_ALERTS, p) for p in alerts.partitions_for_topic(USAGE_ALERTS) or ()
    ]
    if not partitions:
        await alerts._client.force_metadata_update()  # the topic's first use
        partitions = [
            TopicPartition(USAGE_ALERTS, p) for p in alerts.partitions_for_topic(USAGE_ALERTS) or ()
        ]
    alerts.assign(partitions)
    await alerts.seek_to_end(*partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    await producer.start()
    sent_at: dict[bytes, float] = {}
    seen: dict[bytes, float] = {}
    rng = random.Random(3)  # noqa: S311 - synthetic traffic

    async def read() -> None:
        while len(seen) < len(leaked):
            for batch in (await alerts.getmany(timeout_ms=100)).values():
                for message in batch:
                    if message.key in sent_at and message.key not in seen:
                        seen[message.key] = time.perf_counter()

    reader = asyncio.create_task(read())
    try:
        for key in leaked:
            key_bytes, value = usage_record(key, datetime.now(UTC), rng, status=401)
            sent_at[key_bytes] = time.perf_counter()
            await producer.send(topic, value, key=key_bytes)
            await asyncio.sleep(0.5)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 60)
    finally:
        reader.cancel()
        await producer.stop()
        await alerts.stop()
    missing = len(leaked) - len(seen)
    if missing:
        raise RuntimeError(f"{missing} of {len(leaked)} alerts never arrived")
    return [seen[k] - sent_at[k] for k in seen]
