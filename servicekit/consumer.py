"""The one way the services consume a topic: batches, at-least-once, poison to the .dlq.

Each batch is decoded record by record with the topic's contract; what does not decode goes
to `<topic>.dlq` (or, where the topic says so, is answered otherwise), the rest is handed to
the service's handler, and only then are the offsets committed. A failure of the database
or broker is retried with backoff, without committing, until it succeeds or the service
stops; any other failure of a batch is narrowed down record by record, and only the record
that fails on its own is dead-lettered. So nothing is lost and a bad message never blocks
its partition.

FastStream runs the subscription (consumer group, batching, AsyncAPI); its ack policy is
MANUAL because its ACK policy would commit a batch whose handler failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from itertools import chain
from typing import Any, Final, Generic, Literal, NamedTuple, TypeAlias, TypeVar

import asyncpg
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from servicekit.kafka import DeadLetters
from servicekit.logging import get_logger
from servicekit.metrics import (
    BATCH_RETRIES,
    BATCH_SECONDS,
    MESSAGES_CONSUMED,
    MESSAGES_DEAD_LETTERED,
)

T = TypeVar("T")
Record: TypeAlias = ConsumerRecord[bytes, bytes]
log = get_logger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    KafkaError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    # What a connection the server dropped mid-operation raises (e.g. "cannot switch to
    # state 15; another operation (2) is in progress" while PostgreSQL shuts down).
    asyncpg.InternalClientError,
)
"""Failures of the infrastructure, not of the message: retried, never dead-lettered."""


class Received(NamedTuple, Generic[T]):
    """A decoded message with the record it came from (topic, partition, offset, headers).
    A tuple: made for every message, by the hundred thousand a second."""

    record: Record
    message: T


def decode_error(exc: BaseException) -> str:
    """One line that says why a message was refused, without echoing its content."""
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)[:5]
        ]
        return f"invalid {exc.title}: " + "; ".join(parts)
    return f"{type(exc).__name__}: {exc}"


class InvalidMessages(Exception):
    """Raised by a handler that checks its messages against their contract itself (to do
    it while its previous writes are under way) and found some that fail: it must have
    taken no effect. They are dead-lettered as undecodable; the rest is handled again."""

    def __init__(self, reasons: dict[tuple[int, int], str]) -> None:
        super().__init__(f"{len(reasons)} invalid message(s)")
        self.reasons = reasons
        """Why each failed, by (partition, offset)."""


@dataclasses.dataclass(frozen=True)
class Subscription(Generic[T]):
    """What a service reads from one topic and what it does with a batch of it."""

    topic: str
    group_id: str | None
    decode: Callable[[bytes], T]
    handle: Callable[[list[Received[T]]], Awaitable[None]]
    payload: Any
    """The contract type, for the AsyncAPI document."""
    description: str
    on_invalid: Callable[[Record, str], Awaitable[bool]] | None = None
    retryable: tuple[type[BaseException], ...] = ()
    """Failures of this topic's handling that pass with time (e.g. a write conflict):
    retried like a broken connection instead of dead-lettering the message."""
    """Answers an undecodable message itself (True) instead of dead-lettering it."""
    max_records: int = 500
    batch_timeout_ms: int = 50
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    title: str | None = None
    """Name in the AsyncAPI document; needed when one service reads a topic twice."""
    decode_many: Callable[[list[bytes]], list[T | None]] | None = None
    """Decodes a whole batch in one call (where that is cheaper than record by record):
    a value per record, or None where it leaves the record to `decode`, whose verdict
    (a value or a refusal) stands."""
    wake_on_record: bool = False
    """True: an idle reader waits for the first record and takes it the moment the
    fetcher has it (for a topic whose every message someone waits on, e.g. commands).
    False: FastStream's poll: after `batch_timeout_ms` without records it sleeps as long
    again, so a record that lands then waits up to that long, and an idle reader wakes
    up every 2 x `batch_timeout_ms`."""


class BatchProcessor(Generic[T]):
    """Decode, dead-letter, handle with retries: the logic, testable without a broker."""

    def __init__(
        self,
        subscription: Subscription[T],
        dead_letters: DeadLetters,
        max_backoff: float = 5.0,
    ) -> None:
        self.sub = subscription
        self.dead_letters = dead_letters
        self.max_backoff = max_backoff
        self.subscriber: Any = None
        """FastStream's subscriber, once registered on a broker (its aiokafka consumer)."""
        self.done_through: dict[int, int] = {}
        """Per partition, the offset after the last record processed (handled or refused)."""

    async def process(self, records: Sequence[Record]) -> None:
        started = time.perf_counter()
        decoded: Sequence[T | None] = (
            [None] * len(records)
            if self.sub.decode_many is None
            else self.sub.decode_many([record.value or b"" for record in records])
        )
        good: list[Received[T]] = []
        for record, value in zip(records, decoded, strict=True):
            if value is not None:
                good.append(Received(record, value))
                continue
            try:
                good.append(Received(record, self.sub.decode(record.value or b"")))
            except (ValueError, TypeError, UnicodeDecodeError) as exc:
                await self._refuse(record, decode_error(exc), undecodable=True)
        if good:
            await self._handle(good)
        last = {record.partition: record.offset for record in records}  # in order per partition
        for partition, offset in last.items():
            done = self.done_through.get(partition, 0)
            self.done_through[partition] = max(done, offset + 1)
        MESSAGES_CONSUMED.labels(self.sub.topic).inc(len(records))
        BATCH_SECONDS.labels(self.sub.topic).observe(time.perf_counter() - started)

    async def _refuse(self, record: Record, reason: str, undecodable: bool = False) -> None:
        # on_invalid answers messages that are not valid contracts; a valid message whose
        # processing failed goes to the dead letters with the reason.
        if (
            undecodable
            and self.sub.on_invalid is not None
            and await self._retrying(self.sub.on_invalid, record, reason)
        ):
            return
        await self._retrying(self.dead_letters.send, record, reason, self.sub.group_id)
        MESSAGES_DEAD_LETTERED.labels(record.topic).inc()
        log.warning(
            "dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason,
        )

    async def _handle(self, batch: list[Received[T]]) -> None:
        try:
            await self._retrying(self.sub.handle, batch)
        except InvalidMessages as invalid:
            rest = [
                item
                for item in batch
                if (item.record.partition, item.record.offset) not in invalid.reasons
            ]
            if len(rest) == len(batch):  # names none of these messages: an ordinary failure
                await self._narrow(batch, invalid)
                return
            for item in batch:
                reason = invalid.reasons.get((item.record.partition, item.record.offset))
                if reason is not None:
                    await self._refuse(item.record, reason, undecodable=True)
            if rest:
                await self._handle(rest)
        except Exception as exc:
            await self._narrow(batch, exc)

    async def _narrow(self, batch: list[Received[T]], exc: Exception) -> None:
        """Handle the messages of a failed batch one by one: only a culprit is refused."""
        if len(batch) == 1:
            await self._refuse(batch[0].record, f"processing failed: {decode_error(exc)}")
            return
        log.warning(
            "batch_failed_narrowing",
            topic=self.sub.topic,
            size=len(batch),
            error=decode_error(exc),
        )
        for item in batch:
            await self._handle([item])

    async def _retrying(self, func: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        delay = 0.1
        while True:
            try:
                return await func(*args)
            except (*TRANSIENT_ERRORS, *self.sub.retryable) as exc:
                BATCH_RETRIES.labels(self.sub.topic).inc()
                log.warning(
                    "transient_failure_retrying",
                    topic=self.sub.topic,
                    error=decode_error(exc),
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)


async def _raw_records(message: Any) -> Any:
    """FastStream decoder: hand the handler the raw records, not parsed JSON."""
    return message.raw_message


async def _lenient_parser(
    records: tuple[Record, ...], original: Callable[..., Awaitable[Any]]
) -> Any:
    """FastStream's parser decodes headers as UTF-8; a record whose headers are not must
    still reach the handler (and the .dlq when its body is bad), so such headers are
    replaced with their decodable form instead of failing the whole batch."""
    try:
        return await original(records)
    except UnicodeDecodeError:
        cleaned = tuple(
            dataclasses.replace(
                r, headers=[(k, v.decode("utf-8", "replace").encode()) for k, v in r.headers]
            )
            for r in records
        )
        return await original(cleaned)


def subscribe(
    broker: KafkaBroker, sub: Subscription[T], dead_letters: DeadLetters
) -> BatchProcessor[T]:
    """Register `sub` on the broker; returns its processor (for tests)."""
    processor = BatchProcessor(sub, dead_letters)

    async def consume(records: Any) -> None:
        await processor.process(records)
        if sub.group_id is not None:  # a group-less reader (e.g. a cache listener) keeps no offsets
            await broker.context.get_local("message").ack()

    consume.__annotations__ = {"records": list[sub.payload], "return": None}  # type: ignore[name-defined]
    consume.__name__ = f"consume_{sub.topic.replace('.', '_').replace('-', '_')}"
    processor.subscriber = broker.subscriber(
        sub.topic,
        group_id=sub.group_id,
        batch=True,
        max_records=sub.max_records,
        batch_timeout_ms=sub.batch_timeout_ms,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset=sub.auto_offset_reset,
        decoder=_raw_records,
        parser=_lenient_parser,
        title=sub.title or f"{sub.topic}:consume",
        description=sub.description,
    )
    processor.subscriber(consume)
    if sub.wake_on_record:
        _wake_on_record(processor.subscriber, sub.max_records)
    return processor


IDLE_WAIT_MS: Final = 1000
"""How long a `wake_on_record` reader's poll waits before it looks whether it must stop
(a stop also cancels the poll): no record waits for it."""


def _wake_on_record(subscriber: Any, max_records: int) -> None:
    """Replace the subscriber's poll (getmany with a short timeout, then a sleep as long
    when it came back empty) with one that waits on the fetcher: aiokafka's getmany
    returns as soon as a fetch brings records, however long its timeout, so the batch is
    handed over at once and an idle reader costs one wake-up a second."""

    async def get_msg(consumer: Any) -> tuple[Record, ...]:
        while subscriber.running:
            batches = await consumer.getmany(timeout_ms=IDLE_WAIT_MS, max_records=max_records)
            if batches:
                return tuple(chain.from_iterable(batches.values()))
        return ()

    subscriber.get_msg = get_msg


async def positioned(processor: BatchProcessor[Any], timeout: float = 60.0) -> int:
    """Wait until a started reader holds its partitions, each at a fixed position; returns
    how many. A group-less reader starting at `latest` (a cache listener) learns its
    position only from its first offset request: until then, an event published meanwhile
    would be skipped, so a service waits for this before it says it is ready."""
    consumer = getattr(processor.subscriber, "consumer", None)
    if consumer is None:
        raise RuntimeError(f"the reader of {processor.sub.topic} has not started")

    async def held() -> int:
        while not consumer.assignment():  # noqa: ASYNC110 - aiokafka has no public event
            await asyncio.sleep(0.05)  # for the assignment of a group-less subscription
        partitions = consumer.assignment()
        for partition in partitions:
            await consumer.position(partition)
        return len(partitions)

    try:
        return await asyncio.wait_for(held(), timeout)
    except TimeoutError:
        raise RuntimeError(
            f"the reader of {processor.sub.topic} got no partitions in {timeout:.0f} s"
        ) from None


async def caught_up(processor: BatchProcessor[Any], timeout: float = 120.0) -> dict[int, int]:
    """Wait until a positioned group-less reader that starts at `earliest` has processed
    every record its partitions held when this was called (their end offsets then); returns
    those ends. A reader that holds state from a compacted topic (the latest message per
    key is the state) waits for this before the service says it is ready."""
    consumer = getattr(processor.subscriber, "consumer", None)
    if consumer is None:
        raise RuntimeError(f"the reader of {processor.sub.topic} has not started")
    partitions = list(consumer.assignment())
    ends = await consumer.end_offsets(partitions)
    starts = await consumer.beginning_offsets(partitions)
    behind = {tp.partition: end for tp, end in ends.items() if end > starts[tp]}

    async def processed() -> None:
        while any(processor.done_through.get(p, 0) < end for p, end in behind.items()):  # noqa: ASYNC110 - set by the reader's batches
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(processed(), timeout)
    except TimeoutError:
        raise RuntimeError(
            f"the reader of {processor.sub.topic} did not catch up in {timeout:.0f} s"
        ) from None
    return {tp.partition: end for tp, end in ends.items()}
