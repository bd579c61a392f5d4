"""Reading topics in tests: from "now" on, or everything, with a deadline."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

Record: TypeAlias = ConsumerRecord[bytes, bytes]


class TopicTail:
    """Remembers a topic's end offsets at creation; `collect` returns what came after."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._consumer: AIOKafkaConsumer | None = None
        self._start: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> TopicTail:
        if self._consumer is not None:  # opened already (e.g. once its topic was known)
            return self
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            client_id=f"test-tail-{uuid.uuid4().hex[:8]}",
        )
        await consumer.start()
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [
            TopicPartition(self.topic, p)
            for p in sorted(cluster.partitions_for_topic(self.topic) or ())
        ]
        if not partitions:
            await consumer.stop()
            raise AssertionError(f"topic {self.topic} does not exist")
        consumer.assign(partitions)
        self._start = await consumer.end_offsets(partitions)
        for tp, offset in self._start.items():
            consumer.seek(tp, offset)
        self._consumer = consumer
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def collect(
        self,
        until: Callable[[list[Record]], bool],
        timeout: float = 60.0,
    ) -> list[Record]:
        """Read new records until `until(records_so_far)` holds; fail after `timeout`."""
        assert self._consumer is not None
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        while not until(records):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s on {self.topic}; read {len(records)} records"
                )
            batches = await self._consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                records.extend(batch)
        return records

    async def settle(self, quiet: float = 1.0) -> list[Record]:
        """Everything that arrives until the topic has been quiet for `quiet` seconds."""
        assert self._consumer is not None
        records: list[Record] = []
        last_seen = time.monotonic()
        while time.monotonic() - last_seen < quiet:
            batches = await self._consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                records.extend(batch)
                last_seen = time.monotonic()
            await asyncio.sleep(0)
        return records


def header(record: Record, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            text: str = value.decode()
            return text
    return None


async def committed_offset(bootstrap: str, group: str, topic: str, partition: int) -> int | None:
    """The offset `group` committed on the partition: the next one it will read."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="tests-offsets")
    await admin.start()
    try:
        place = TopicPartition(topic, partition)
        offsets = await admin.list_consumer_group_offsets(group, partitions=[place])
    finally:
        await admin.close()
    found = offsets.get(place)
    return None if found is None or found.offset < 0 else found.offset
