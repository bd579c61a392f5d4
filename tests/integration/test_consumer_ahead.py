"""A subscription that reads ahead (servicekit's `ahead`), on the real broker: the next
batch is fetched and decoded while one is being stored, yet the handler takes one batch at
a time in the order of each partition, and a batch's offsets are committed only once its
own effect is stored (never the consumer's position, a batch further)."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker

from servicekit.consumer import AheadBatchProcessor, Received, Subscription, subscribe
from servicekit.kafka import DeadLetters, KafkaProducer
from tests.support.stack import Stack
from tests.support.usage import scratch_topic
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack
MESSAGES = 40
BATCH = 10


async def committed(bootstrap: str, group: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="tests-admin")
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {tp.partition: o.offset for tp, o in offsets.items() if o.offset >= 0}
    finally:
        await admin.close()


async def test_the_next_batch_is_read_while_one_is_stored_and_offsets_follow_the_effect(
    stack: Stack, producer: KafkaProducer
) -> None:
    group = f"tests-ahead-{uuid.uuid4().hex[:8]}"
    decoded: list[int] = []
    handled: list[list[tuple[int, int]]] = []
    entered: list[list[Received[int]]] = []
    in_handler = 0
    most_in_handler = 0
    gate = asyncio.Event()

    def decode(raw: bytes) -> int:
        decoded.append(int(raw))
        return int(raw)

    async def handle(batch: list[Received[int]]) -> None:
        nonlocal in_handler, most_in_handler
        in_handler += 1
        entered.append(batch)
        most_in_handler = max(most_in_handler, in_handler)
        try:
            await gate.wait()  # the first batch is "stored" only once the test allows it
            handled.append([(item.record.partition, item.message) for item in batch])
        finally:
            in_handler -= 1

    async with scratch_topic(stack.kafka, "tests.ahead") as topic:
        ends: dict[int, int] = {}
        for n in range(MESSAGES):
            written = await producer.send(topic, str(n).encode(), key=str(n % 7).encode())
            ends[written.partition] = written.offset + 1
        broker = KafkaBroker(stack.kafka, apply_types=False, logger=logging.getLogger("faststream"))
        sub = Subscription(topic, group, decode, handle, int, "test", max_records=BATCH, ahead=True)
        processor = subscribe(broker, sub, DeadLetters(producer))
        assert isinstance(processor, AheadBatchProcessor)
        await broker.start()
        try:

            async def read_ahead() -> bool:
                return bool(entered) and len(decoded) > len(entered[0])

            await wait_until(read_ahead, timeout=60, what="the next batch read meanwhile")
            assert await committed(stack.kafka, group) == {}, "nothing is stored yet"
            assert len(decoded) <= len(entered[0]) + BATCH, "one batch ahead at most"

            gate.set()

            async def all_committed() -> bool:
                return await committed(stack.kafka, group) == ends

            await wait_until(all_committed, timeout=60, what="every batch stored and committed")
            await processor.settle()
        finally:
            await broker.stop()

    assert most_in_handler == 1, "the handler takes one batch at a time"
    values = [value for batch in handled for _, value in batch]
    assert sorted(values) == list(range(MESSAGES)), "each message handled once"
    by_partition: dict[int, list[int]] = {}
    for partition, value in (pair for batch in handled for pair in batch):
        by_partition.setdefault(partition, []).append(value)
    for partition_values in by_partition.values():
        assert partition_values == sorted(partition_values), "in the order of the partition"
