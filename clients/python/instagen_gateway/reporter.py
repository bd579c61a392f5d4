"""``UsageReporter``: every request a gateway served, as a record on ``usage.records``.

Records are queued in memory (bounded: when the queue is full a record is dropped and
counted in ``dropped``, never blocking a request) and sent in batches by an idempotent
producer, keyed by ``key_id`` so one key's records stay in order. ``record_id`` comes
from the gateway's request id, so a request reported twice (by this library and by the
platform's forward-auth endpoint, or after a retry) is counted once. ``stop()`` sends
what is queued before it returns.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from aiokafka import AIOKafkaProducer

USAGE_RECORDS: Final = "usage.records"
CURRENT: Final = "current"
"""The secret a verdict names for a key's current secret: left out of the record."""
RECORD_NAMESPACE: Final = uuid.UUID("5b0c9f62-8a4e-5d7e-9a51-6a1f0f3a2b10")
"""uuid5 namespace of record ids made from request ids that are not UUIDs themselves."""


def record_id_for(request_id: str | None) -> str:
    """The record id of a request: its id if that is a UUID, else a UUID derived from it
    (the same request id always gives the same record id); a new one without an id."""
    if not request_id:
        return str(uuid.uuid4())
    try:
        return str(uuid.UUID(request_id))
    except ValueError:
        return str(uuid.uuid5(RECORD_NAMESPACE, request_id))


class UsageReporter:
    """Report each request made with a key; see the module docstring."""

    def __init__(
        self,
        kafka_bootstrap_servers: str,
        *,
        max_queued: int = 100_000,
        batch_size: int = 500,
        topic: str = USAGE_RECORDS,
    ) -> None:
        self._bootstrap = kafka_bootstrap_servers
        self._queue: asyncio.Queue[tuple[bytes, bytes] | None] = asyncio.Queue(max_queued)
        """Records to send; None asks the sender to finish once what precedes it is sent."""
        self._batch = batch_size
        self._topic = topic
        self._producer: AIOKafkaProducer | None = None
        self._sender: asyncio.Task[None] | None = None
        self.sent = 0
        self.dropped = 0

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=10,
            client_id="instagen-gateway-reporter",
        )
        await self._producer.start()
        self._sender = asyncio.create_task(self._send_forever())

    async def stop(self) -> None:
        """Send everything queued, then close."""
        if self._sender is not None:
            await self._queue.put(None)
            await self._sender
        if self._producer is not None:
            await self._producer.stop()

    async def __aenter__(self) -> UsageReporter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def report(
        self,
        *,
        key_id: str,
        account_id: str,
        source_ip: str,
        endpoint: str,
        status_code: int,
        latency_ms: float,
        request_id: str | None = None,
        tokens_in: int = 0,
        tokens_out: int = 0,
        user_agent: str | None = None,
        model: str | None = None,
        occurred_at: datetime | None = None,
        secret: str | None = None,
    ) -> bool:
        """Queue one record; False when the queue is full and the record was dropped.
        ``secret``: the verdict's (``previous`` for a rotated-out secret in its grace
        period, which keeps that grace going while clients still present it)."""
        at = (occurred_at or datetime.now(UTC)).astimezone(UTC)
        record: dict[str, Any] = {
            "record_id": record_id_for(request_id),
            "key_id": key_id,
            "account_id": account_id,
            "occurred_at": at.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z",
            "source_ip": source_ip,
            "user_agent": user_agent[:500] if user_agent else None,
            "endpoint": (endpoint or "/")[:200],
            "model": model[:100] if model else None,
            "status_code": status_code,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "latency_ms": round(max(0.0, latency_ms), 3),
        }
        if secret is not None and secret != CURRENT:
            record["secret"] = secret
        try:
            self._queue.put_nowait((key_id.encode(), json.dumps(record).encode()))
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    async def _send_forever(self) -> None:
        finishing = False
        while not finishing:
            batch: list[tuple[bytes, bytes]] = []
            item = await self._queue.get()
            while item is not None:
                batch.append(item)
                if len(batch) >= self._batch or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            finishing = item is None
            if batch:
                await self._send(batch)

    async def _send(self, batch: list[tuple[bytes, bytes]]) -> None:
        if self._producer is None:
            raise RuntimeError("UsageReporter.start() was not awaited")
        futures = [await self._producer.send(self._topic, value, key=key) for key, value in batch]
        await asyncio.gather(*futures)
        self.sent += len(batch)
