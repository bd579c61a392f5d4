"""The one way the services consume a topic: batches, at-least-once, poison to the .dlq.

Each batch is decoded record by record with the topic's contract; what does not decode goes
to `<topic>.dlq` (or, where the topic says so, is answered otherwise), the rest is handed to
the service's handler, and only then are the offsets committed. A failure of the database
or broker is retried with backoff, without committing, until it succeeds or the service
stops; any other failure of a batch is narrowed down by halves, and only a record that
fails on its own is dead-lettered (one poison record in a batch of n costs about 2 log2 n
transactions, not n). So nothing is lost and a bad message never blocks
its partition.

FastStream runs the subscription (consumer group, batching, AsyncAPI); its ack policy is
MANUAL because its ACK policy would commit a batch whose handler failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from itertools import chain
from typing import Any, Final, Generic, Literal, NamedTuple, TypeAlias, TypeVar

import asyncpg
from aiokafka import ConsumerRecord, TopicPartition
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
Refused: TypeAlias = tuple[Record, str]
"""A message that does not decode, and why."""
Then: TypeAlias = Callable[[], Awaitable[None]]
"""What a batch still has to do once its effect is stored and before its offsets are
committed (e.g. announce the results it stored), returned by its handler. A reader that
reads ahead starts the next batch's handler meanwhile: the next batch no longer waits for
these broker round trips, only for the effect it may depend on."""
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


_new_received: Final = tuple.__new__
"""Makes a `Received` of (record, message) without the named tuple's keyword-reading
`__new__`: one per message, by the hundred thousand a second."""


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
    handle: Callable[[list[Received[T]]], Awaitable[Then | None]]
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
    ahead: bool = False
    """Read and decode the next batch while this one's effect is being stored (one batch
    ahead at most; see `AheadBatchProcessor`). The handler still sees one batch at a time,
    in order; each batch's offsets are committed, explicitly, once its own effect is
    stored (and the `Then` its handler returned has run). For a handler that waits on its
    database, not the CPU, most of a batch."""
    then_behind: bool = False
    """Without `ahead`: the next batch is fetched once this one's effect is stored (so it
    holds all that came meanwhile), and handled while this one's `Then` and offset commit
    are under way (see `AheadBatchProcessor`). For a handler whose effect is quick and
    whose `Then` waits on the broker (e.g. commands and their results)."""


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
        for then in await self._take_effect(records, *self._decode(records), started):
            await self._finish(then)

    def _decode(self, records: Sequence[Record]) -> tuple[list[Received[T]], list[Refused]]:
        """The batch's messages that decode, and why each of the others does not (CPU
        work only: no effect is taken)."""
        decoded: Sequence[T | None] = (
            [None] * len(records)
            if self.sub.decode_many is None
            else self.sub.decode_many([record.value or b"" for record in records])
        )
        good: list[Received[T]] = []
        refused: list[Refused] = []
        for record, value in zip(records, decoded, strict=True):
            if value is not None:
                good.append(_new_received(Received, (record, value)))
                continue
            try:
                good.append(Received(record, self.sub.decode(record.value or b"")))
            except (ValueError, TypeError, UnicodeDecodeError) as exc:
                refused.append((record, decode_error(exc)))
        return good, refused

    async def _take_effect(
        self,
        records: Sequence[Record],
        good: list[Received[T]],
        refused: list[Refused],
        started: float,
    ) -> list[Then]:
        """Refuse and handle the batch; returns what its handler left to do after it."""
        await self._refuse(refused, undecodable=True)
        thens = await self._handle(good) if good else []
        last = {record.partition: record.offset for record in records}  # in order per partition
        for partition, offset in last.items():
            done = self.done_through.get(partition, 0)
            self.done_through[partition] = max(done, offset + 1)
        MESSAGES_CONSUMED.labels(self.sub.topic).inc(len(records))
        BATCH_SECONDS.labels(self.sub.topic).observe(time.perf_counter() - started)
        return thens

    async def _finish(self, then: Then) -> None:
        """Run what follows a stored effect until it passes: it can be neither undone nor
        skipped (the offsets after it would be committed without it), so every failure,
        not only a transient one, is retried with backoff (and logged)."""
        await self._retrying(then, retry_on=(Exception,), event="after_effect_retrying")

    async def _refuse(self, refused: Sequence[Refused], undecodable: bool = False) -> None:
        """Answer or dead-letter each refused record: on_invalid answers messages that are
        not valid contracts (all at once); the others, and a valid message whose processing
        failed, go to the dead letters with the reason, all in one send."""
        letters = list(refused)
        on_invalid = self.sub.on_invalid
        if undecodable and on_invalid is not None and letters:
            # Answered together: each answer's send joins the others' produce request
            # instead of waiting for the one before it.
            answered = await asyncio.gather(
                *(self._retrying(on_invalid, record, reason) for record, reason in letters)
            )
            letters = [refusal for refusal, done in zip(letters, answered, strict=True) if not done]
        if not letters:
            return
        await self._retrying(self.dead_letters.send_many, letters, self.sub.group_id)
        MESSAGES_DEAD_LETTERED.labels(self.sub.topic).inc(len(letters))
        for record, reason in letters:
            log.warning(
                "dead_lettered",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                reason=reason,
            )

    async def _handle(self, batch: list[Received[T]]) -> list[Then]:
        """Handle `batch` (narrowed down on failure); returns what its handlers left to do."""
        try:
            then = await self._retrying(self.sub.handle, batch)
        except InvalidMessages as invalid:
            rest = [
                item
                for item in batch
                if (item.record.partition, item.record.offset) not in invalid.reasons
            ]
            if len(rest) == len(batch):  # names none of these messages: an ordinary failure
                return await self._narrow(batch, invalid)
            named = [
                (item.record, reason)
                for item in batch
                if (reason := invalid.reasons.get((item.record.partition, item.record.offset)))
                is not None
            ]
            await self._refuse(named, undecodable=True)
            return await self._handle(rest) if rest else []
        except Exception as exc:
            return await self._narrow(batch, exc)
        return [] if then is None else [then]

    async def _narrow(self, batch: list[Received[T]], exc: Exception) -> list[Then]:
        """Handle the two halves of a failed batch, in order, each narrowed down again if
        it fails: only a record that fails alone is refused."""
        if len(batch) == 1:
            await self._refuse([(batch[0].record, f"processing failed: {decode_error(exc)}")])
            return []
        log.warning(
            "batch_failed_narrowing",
            topic=self.sub.topic,
            size=len(batch),
            error=decode_error(exc),
        )
        half = len(batch) // 2
        return [*await self._handle(batch[:half]), *await self._handle(batch[half:])]

    async def _retrying(
        self,
        func: Callable[..., Awaitable[Any]],
        *args: Any,
        retry_on: tuple[type[BaseException], ...] = (),
        event: str = "transient_failure_retrying",
    ) -> Any:
        """`func(*args)`, again with backoff after each transient failure (or each of
        `retry_on`, where given)."""
        retried = retry_on or (*TRANSIENT_ERRORS, *self.sub.retryable)
        delay = 0.1
        while True:
            try:
                return await func(*args)
            except retried as exc:
                BATCH_RETRIES.labels(self.sub.topic).inc()
                log.warning(
                    event,
                    topic=self.sub.topic,
                    error=decode_error(exc),
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)


class AheadBatchProcessor(BatchProcessor[T]):
    """A processor that decodes batch N+1 while batch N's effect is stored: `take` decodes
    a batch, waits until the previous one's effect is stored, starts storing this one and
    returns, so the next batch is fetched and decoded meanwhile (`Subscription.ahead`; with
    `then_behind` instead, `take` returns once this batch's effect is stored). What the
    previous batch's handler left to do after its effect (its `Then`: e.g. announcing
    results) and the commit of its offsets go on while this batch's handler runs.

    The guarantees are those of `BatchProcessor`: the handler takes one batch at a time in
    the order they were read (a batch's handler starts once the previous batch's effect is
    stored), and a batch's offsets (exactly those of its records, not the consumer's
    position, which is one batch further) are committed only after its effect is stored
    and its `Then` has run, and in order. A batch that fails beyond what `process` answers
    (a bug) is not committed: its partitions, and those of the batch read after it, are
    rewound to their first records, which are read again.
    """

    _stored: asyncio.Future[bool] | None = None
    """Whether the last batch taken had its effect stored (False: it failed), once known."""
    _storing: asyncio.Task[None] | None = None
    """The last batch taken, until its offsets are committed (or it failed)."""
    _stopping = False
    _rewound: Collection[int] = frozenset()
    """The partitions of the last batch that failed, rewound to its first records."""

    async def take(self, records: Sequence[Record]) -> None:
        started = time.perf_counter()
        good, refused = self._decode(records)  # while the previous batch is being stored
        previous = self._stored
        if previous is not None and not await previous:
            self._stored = None
            self._rewind(records, keep=self._rewound)  # read again after the failed batch
            return
        self._stored = stored = asyncio.get_running_loop().create_future()
        self._storing = storing = asyncio.ensure_future(
            self._store(records, good, refused, started, stored, self._storing)
        )
        if self._stopping:
            await storing
        elif not self.sub.ahead:  # then_behind: fetch the next batch once this one is stored
            await asyncio.wait([stored])

    async def settle(self) -> None:
        """Stop reading ahead and wait until the batch in hand is stored and committed (at
        shutdown, before the consumer closes: its offsets can still be committed)."""
        self._stopping = True
        while (storing := self._storing) is not None and not storing.done():
            await asyncio.wait([storing])

    async def _store(
        self,
        records: Sequence[Record],
        good: list[Received[T]],
        refused: list[Refused],
        started: float,
        stored: asyncio.Future[bool],
        before: asyncio.Task[None] | None,
    ) -> None:
        try:
            thens = await self._take_effect(records, good, refused, started)
        except Exception as exc:
            log.error(
                "batch_not_stored_rewound",
                topic=self.sub.topic,
                size=len(records),
                error=decode_error(exc),
            )
            self._rewound = self._rewind(records)
            stored.set_result(False)
            return
        except BaseException:  # cancelled (a stop): so is the batch that waits to follow it
            stored.cancel()
            raise
        stored.set_result(True)  # the next batch's handler may start
        for then in thens:
            await self._finish(then)
        if before is not None:
            await asyncio.wait([before])  # offsets are committed in the order of the batches
        await self._commit(records)

    def _consumer(self) -> Any:
        return getattr(self.subscriber, "consumer", None)

    async def _commit(self, records: Sequence[Record]) -> None:
        consumer = self._consumer()
        if self.sub.group_id is None or consumer is None:
            return
        offsets = {
            TopicPartition(record.topic, record.partition): record.offset + 1 for record in records
        }  # the last offset of each partition wins: records are in order per partition
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:  # a rebalance took the partitions, the consumer stopped...
            # Not retried: whoever reads these partitions next gets this batch again and
            # must recognise it (at-least-once), as after a crash.
            log.warning("offsets_not_committed", topic=self.sub.topic, error=decode_error(exc))

    def _rewind(self, records: Sequence[Record], keep: Collection[int] = ()) -> set[int]:
        """Read each partition of the batch again from its first record in the batch, but
        those in `keep` (rewound further already, by the failed batch before); returns the
        partitions rewound."""
        first: dict[int, int] = {}
        for record in records:
            if record.partition not in keep:
                first.setdefault(record.partition, record.offset)
        consumer = self._consumer()
        for partition, offset in first.items() if consumer is not None else ():
            with contextlib.suppress(KafkaError):  # no longer assigned: read elsewhere
                consumer.seek(TopicPartition(self.sub.topic, partition), offset)
        return set(first)


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
    processor: BatchProcessor[T]
    if sub.ahead or sub.then_behind:
        processor = ahead = AheadBatchProcessor(sub, dead_letters)

        async def consume(records: Any) -> None:
            await ahead.take(records)  # commits each batch's own offsets once it is stored

    else:
        processor = BatchProcessor(sub, dead_letters)

        async def consume(records: Any) -> None:
            await processor.process(records)
            if sub.group_id is not None:  # a group-less reader (a cache listener) keeps no offsets
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
