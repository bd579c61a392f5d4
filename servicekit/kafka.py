"""The one Kafka producer a service writes with, and the dead-letter sender built on it.

Idempotent (`enable_idempotence`, `acks=all`), so a retried send never duplicates a message
within a producer session; at-least-once across sessions is the consumers' business.

aiokafka's idempotent producer dies for good on `OutOfOrderSequenceNumber` (seen after a
broker restart: the broker's sequence state for the producer id no longer matches) or on
being fenced; every later send fails the same way. So the failed send raises as usual
(the caller retries, as after any send error) and the next one goes through a new
producer, with a new producer id: a new session, hence at-least-once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError, OutOfOrderSequenceNumber, ProducerFenced
from aiokafka.structs import RecordMetadata

from contracts.topics import (
    DLQ_CONSUMER_GROUP_HEADER,
    DLQ_ERROR_HEADER,
    DLQ_FAILED_AT_HEADER,
    DLQ_SOURCE_OFFSET_HEADER,
    DLQ_SOURCE_PARTITION_HEADER,
    DLQ_SOURCE_TOPIC_HEADER,
    dlq,
)

Headers = Sequence[tuple[str, bytes]]
_SESSION_OVER = (OutOfOrderSequenceNumber, ProducerFenced)
"""Errors after which this producer (its producer id) can never send again."""
_MAX_ERROR_LENGTH = 2000


class KafkaProducer:
    """A started/stopped wrapper that keeps the producer settings in one place."""

    def __init__(self, bootstrap_servers: str, client_id: str, linger_ms: int = 5) -> None:
        self._options: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": linger_ms,
            "max_batch_size": 256 * 1024,
            "request_timeout_ms": 15_000,
            "retry_backoff_ms": 200,
        }
        self._producer: AIOKafkaProducer | None = None
        self._renewing = asyncio.Lock()

    async def start(self) -> None:
        """Connect (the aiokafka producer must be made inside the running loop)."""
        self._producer = AIOKafkaProducer(**self._options)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    @property
    def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("the Kafka producer is not started")
        return self._producer

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Headers = ()
    ) -> RecordMetadata:
        """Send and wait until the broker has it (acks=all); returns where it was written."""
        producer = self._started
        try:
            return await producer.send_and_wait(topic, value, key=key, headers=list(headers))
        except _SESSION_OVER:
            await self._renew(producer)
            raise

    async def send_many(
        self, topic: str, messages: Sequence[tuple[bytes | None, bytes, Headers]]
    ) -> None:
        """Send a batch and wait for every acknowledgement; order per key is kept."""
        producer = self._started
        try:
            futures = [
                await producer.send(topic, value, key=key, headers=list(headers))
                for key, value, headers in messages
            ]
            if futures:
                await asyncio.gather(*futures)
        except _SESSION_OVER:
            await self._renew(producer)
            raise

    async def _renew(self, failed: AIOKafkaProducer) -> None:
        """Replace a producer whose session is over (once, however many sends saw it)."""
        async with self._renewing:
            if self._producer is not failed:
                return
            fresh = AIOKafkaProducer(**self._options)
            await fresh.start()
            stale, self._producer = self._producer, fresh
        if stale is not None:
            with contextlib.suppress(Exception):  # it is dead already; only its tasks remain
                await stale.stop()

    async def ping(self) -> bool:
        """True when the broker answers a metadata request (for /ready)."""
        if self._producer is None:
            return False
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout=3)
        except (KafkaError, OSError, TimeoutError):
            return False
        return True


class DeadLetters:
    """Routes a message that cannot be processed to `<topic>.dlq`, original bytes intact."""

    def __init__(self, producer: KafkaProducer) -> None:
        self._producer = producer

    async def send_many(
        self, failures: Sequence[tuple[ConsumerRecord[bytes, bytes], str]], group: str | None
    ) -> None:
        """Each record with why it failed, sent together (one wait for the broker's
        acknowledgements however many there are); order per partition is kept."""
        failed_at = datetime.now(UTC).isoformat().encode()
        by_topic: dict[str, list[tuple[bytes | None, bytes, Headers]]] = {}
        for record, error in failures:
            headers = [
                *(record.headers or ()),
                (DLQ_CONSUMER_GROUP_HEADER, (group or "").encode()),
                (DLQ_ERROR_HEADER, _clip(error).encode()),
                (DLQ_SOURCE_TOPIC_HEADER, record.topic.encode()),
                (DLQ_SOURCE_PARTITION_HEADER, str(record.partition).encode()),
                (DLQ_SOURCE_OFFSET_HEADER, str(record.offset).encode()),
                (DLQ_FAILED_AT_HEADER, failed_at),
            ]
            by_topic.setdefault(dlq(record.topic), []).append(
                (record.key, record.value or b"", headers)
            )
        for topic, messages in by_topic.items():
            await self._producer.send_many(topic, messages)


def _clip(error: str) -> str:
    return error if len(error) <= _MAX_ERROR_LENGTH else error[: _MAX_ERROR_LENGTH - 1] + "…"
