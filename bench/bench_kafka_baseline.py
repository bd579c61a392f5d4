"""kafka_baseline: what bare aiokafka does on the local broker, the ceiling for the others.

No service, no validation, no database: 1 KB usage-record JSON, built before the clock
starts, produced with the producer settings of `servicekit.kafka` (idempotent, acks=all,
linger 5 ms, 256 KB batches), then read back by a fresh consumer group. Last, an open-loop
paced run (each send awaited on its own) gives the send-to-ack latency floor, with the
services' linger of 5 ms and with none. A service benchmark compares with these through
`ctx.figure(..., baseline_of="kafka_baseline/produce_msgs_per_s")`.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.harness import BenchContext, Figure, benchmark
from bench.payloads import MESSAGE_SIZE, usage_message
from bench.scratch_topic import scratch_topic

PARTITIONS: Final = 3
SEND_CHUNK: Final = 10_000
"""send() futures gathered per chunk: bounds memory, costs one pipeline drain per chunk."""
MAX_RECORDS: Final = 5_000
PACED_RATE: Final = 1_000.0
"""Sends per second of the latency run: open loop, each send awaited on its own."""
DEADLINE_S: Final = 300.0
MB: Final = 1_000_000
Message = tuple[bytes, bytes]

PRODUCER_OPTIONS: Final[dict[str, Any]] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 5,
    "max_batch_size": 256 * 1024,
    "request_timeout_ms": 15_000,
}


@dataclass(frozen=True)
class Throughput:
    messages: int
    payload_bytes: int
    seconds: float

    def figures(self, prefix: str) -> list[Figure]:
        return [
            Figure(f"{prefix}_msgs_per_s", self.messages / self.seconds, "msg/s"),
            Figure(f"{prefix}_mb_per_s", self.payload_bytes / MB / self.seconds, "MB/s"),
        ]


@benchmark("kafka_baseline")
async def kafka_baseline(ctx: BenchContext) -> list[Figure]:
    count = ctx.scale(200_000, 20_000)
    warmup = count // 10
    paced = ctx.scale(2_000, 500)
    ctx.note(
        messages=count,
        warmup_messages=warmup,
        message_bytes=MESSAGE_SIZE,
        partitions=PARTITIONS,
        send_chunk=SEND_CHUNK,
        max_records=MAX_RECORDS,
        paced_sends=paced,
        paced_rate=PACED_RATE,
        producer={k: v for k, v in PRODUCER_OPTIONS.items() if k != "request_timeout_ms"},
    )
    built = time.perf_counter()
    messages = [usage_message(i) for i in range(count)]
    ctx.note(encode_us_per_msg=round((time.perf_counter() - built) / count * 1e6, 2))
    async with scratch_topic(ctx.bootstrap, "bench.baseline", PARTITIONS) as topic:
        ctx.note(topic=topic)
        await produce(ctx.bootstrap, topic, messages[:warmup])
        produced = await produce(ctx.bootstrap, topic, messages)
        join_s, consumed = await consume(ctx.bootstrap, topic, warmup + count)
        figures = [*produced.figures("produce"), *consumed.figures("consume")]
        figures.append(Figure("consume_group_join_ms", join_s * 1000, "ms", better="lower"))
        for linger_ms in (5, 0):
            figures += await send_latency(ctx, topic, paced, linger_ms)
    return figures


async def send_latency(ctx: BenchContext, topic: str, count: int, linger_ms: int) -> list[Figure]:
    """p50 and p99 of the paced sends, in milliseconds."""
    latencies, achieved = await paced_sends(ctx.bootstrap, topic, count, linger_ms)
    ctx.note(**{f"paced_rate_achieved_linger{linger_ms}": round(achieved, 1)})
    cuts = statistics.quantiles(latencies, n=100)
    return [
        Figure(f"send_p{pct}_ms_linger{linger_ms}", cuts[pct - 1] * 1000, "ms", better="lower")
        for pct in (50, 99)
    ]


async def produce(bootstrap: str, topic: str, messages: Sequence[Message]) -> Throughput:
    """Send prebuilt (key, value) pairs as fast as acks come back; no encoding on the clock."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_OPTIONS)
    await producer.start()
    try:
        await producer.partitions_for(topic)  # metadata of the new topic outside the clock
        began = time.perf_counter()
        for start in range(0, len(messages), SEND_CHUNK):
            chunk = messages[start : start + SEND_CHUNK]
            futures = [await producer.send(topic, value, key=key) for key, value in chunk]
            await asyncio.gather(*futures)
        seconds = time.perf_counter() - began
        sent_bytes = sum(len(key) + len(value) for key, value in messages)
        return Throughput(len(messages), sent_bytes, seconds)
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int) -> tuple[float, Throughput]:
    """(group join seconds, throughput from assignment until `count` records are read)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-baseline-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    began = time.perf_counter()
    await consumer.start()
    try:
        while not consumer.assignment():  # the clock starts once the group has assigned us
            _check_deadline(began, "group join")
            await asyncio.sleep(0.001)
        joined = time.perf_counter()
        read = read_bytes = 0
        while read < count:
            _check_deadline(began, f"reading {count} records ({read} read)")
            batches = await consumer.getmany(timeout_ms=1000, max_records=MAX_RECORDS)
            for records in batches.values():
                read += len(records)
                read_bytes += sum(len(r.key) + len(r.value) for r in records)
        throughput = Throughput(read, read_bytes, time.perf_counter() - joined)
        await consumer.commit()
        return joined - began, throughput
    finally:
        await consumer.stop()


async def paced_sends(
    bootstrap: str, topic: str, count: int, linger_ms: int
) -> tuple[list[float], float]:
    """(seconds from send to ack of each message, sends/s achieved) at `PACED_RATE`."""
    options = PRODUCER_OPTIONS | {"linger_ms": linger_ms}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **options)
    await producer.start()
    latencies: list[float] = []

    async def send_one(i: int) -> None:
        key, value = usage_message(i)
        sent_at = time.perf_counter()
        await producer.send_and_wait(topic, value, key=key)
        latencies.append(time.perf_counter() - sent_at)

    try:
        await send_one(-1)  # connection and metadata before the clock
        latencies.clear()
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with asyncio.TaskGroup() as sends:
            for i in range(count):
                await asyncio.sleep(max(0.0, began + i / PACED_RATE - loop.time()))
                sends.create_task(send_one(i))
            achieved = count / (loop.time() - began)
        return latencies, achieved
    finally:
        await producer.stop()


def _check_deadline(began: float, doing: str) -> None:
    if time.perf_counter() - began > DEADLINE_S:
        raise TimeoutError(f"{doing}: over {DEADLINE_S:.0f}s")
