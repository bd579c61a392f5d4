"""A handler that checks its messages itself (to overlap the check with its writes) can
name the ones that fail their contract: they alone go to the dead letters, the rest of the
batch is handled again."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord

from servicekit.consumer import BatchProcessor, InvalidMessages, Received, Subscription


class DeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []
        self.sends = 0

    async def send_many(self, failures: list[tuple[Any, str]], group: str | None) -> None:
        self.sends += 1
        self.sent.extend((record.offset, error) for record, error in failures)


def _records(count: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [
        ConsumerRecord("t", 1, offset, 0, 0, b"k", str(offset).encode(), None, 1, 1, [])
        for offset in range(count)
    ]


async def test_only_the_named_messages_are_dead_lettered_and_the_rest_is_handled() -> None:
    handled: list[list[int]] = []

    async def handle(batch: list[Received[int]]) -> None:
        handled.append([item.message for item in batch])
        bad = {(1, item.record.offset): "too odd" for item in batch if item.message % 3 == 1}
        if bad:
            raise InvalidMessages(bad)

    dead = DeadLetters()
    processor = BatchProcessor(Subscription("t", "g", int, handle, int, ""), dead)  # type: ignore[arg-type]
    await processor.process(_records(6))
    assert handled == [[0, 1, 2, 3, 4, 5], [0, 2, 3, 5]]
    assert dead.sent == [(1, "too odd"), (4, "too odd")]


async def test_naming_none_of_the_batch_is_an_ordinary_failure() -> None:
    async def handle(batch: list[Received[int]]) -> None:
        if len(batch) > 1:
            raise InvalidMessages({(9, 9): "somewhere else"})

    dead = DeadLetters()
    processor = BatchProcessor(Subscription("t", "g", int, handle, int, ""), dead)  # type: ignore[arg-type]
    await processor.process(_records(3))
    assert dead.sent == []  # narrowed down: each alone succeeds


async def test_one_poison_record_in_a_big_batch_is_found_by_halves() -> None:
    """A record whose processing fails is dead-lettered, every other record of the batch
    takes effect once, in offset order, and the search takes about 2 log2 n attempts,
    not n transactions."""
    stored: list[int] = []
    attempts = 0

    async def handle(batch: list[Received[int]]) -> None:
        nonlocal attempts
        attempts += 1
        if any(item.message == 613 for item in batch):
            raise OverflowError("date value out of range")
        stored.extend(item.message for item in batch)  # the effect: only a whole batch

    dead = DeadLetters()
    processor = BatchProcessor(Subscription("t", "g", int, handle, int, ""), dead)  # type: ignore[arg-type]
    await processor.process(_records(5000))
    assert stored == [n for n in range(5000) if n != 613]
    assert dead.sent == [(613, "processing failed: OverflowError: date value out of range")]
    assert attempts <= 2 * 13 + 1


async def test_the_records_a_batch_refuses_are_dead_lettered_in_one_send() -> None:
    async def handle(batch: list[Received[int]]) -> None:
        return None

    dead = DeadLetters()
    records = _records(10)
    for offset in (2, 5, 7):
        records[offset] = ConsumerRecord("t", 1, offset, 0, 0, b"k", b"poison", None, 1, 1, [])
    processor = BatchProcessor(Subscription("t", "g", int, handle, int, ""), dead)  # type: ignore[arg-type]
    await processor.process(records)
    assert [offset for offset, _ in dead.sent] == [2, 5, 7]
    assert dead.sends == 1


async def test_a_connection_dropped_mid_operation_is_retried_not_dead_lettered() -> None:
    """While PostgreSQL shuts down, asyncpg may raise InternalClientError ("cannot switch
    to state ..."): the database's failure, not the message's."""
    failures = [asyncpg.InternalClientError("cannot switch to state 15")] * 2
    handled: list[int] = []

    async def handle(batch: list[Received[int]]) -> None:
        if failures:
            raise failures.pop()
        handled.extend(item.message for item in batch)

    dead = DeadLetters()
    processor = BatchProcessor(
        Subscription("t", "g", int, handle, int, ""),
        dead,  # type: ignore[arg-type]
        max_backoff=0.01,
    )
    await processor.process(_records(3))
    assert (handled, dead.sent) == ([0, 1, 2], [])


async def test_a_batch_decoder_leaves_what_it_does_not_decide_to_the_record_decoder() -> None:
    """`decode_many` decodes what it can; a None goes to `decode`, whose refusal is a dead
    letter; the handler gets every decoded message in offset order."""
    handled: list[list[int]] = []

    async def handle(batch: list[Received[int]]) -> None:
        handled.append([item.message for item in batch])

    def decode_many(values: list[bytes]) -> list[int | None]:
        return [int(v) if int(v) % 2 == 0 else None for v in values]

    def decode(value: bytes) -> int:
        if int(value) == 3:
            raise ValueError("three is refused")
        return int(value)

    dead = DeadLetters()
    sub = Subscription("t", "g", decode, handle, int, "", decode_many=decode_many)
    await BatchProcessor(sub, dead).process(_records(5))  # type: ignore[arg-type]
    assert handled == [[0, 1, 2, 4]]
    assert dead.sent == [(3, "ValueError: three is refused")]


async def test_a_reader_knows_how_far_it_has_processed_each_partition() -> None:
    """What `caught_up` waits on: the offset after the last record processed, whether it
    was handled or refused (a reader that holds state is ready once past the end)."""

    async def handle(batch: list[Received[int]]) -> None:
        return None

    processor = BatchProcessor(Subscription("t", None, int, handle, int, ""), DeadLetters())  # type: ignore[arg-type]
    records = _records(4)
    records[3] = ConsumerRecord("t", 1, 3, 0, 0, b"k", b"not a number", None, 1, 1, [])
    await processor.process(records)
    assert processor.done_through == {1: 4}


async def test_invalid_messages_are_answered_together_and_the_unanswerable_dead_lettered() -> None:
    """`on_invalid` answers of one batch run at once (each a send that joins the others'
    request, not one broker round trip after another); what it cannot answer goes to the
    dead letters in one send."""
    in_flight, most = 0, 0
    release = asyncio.Event()

    async def answer(record: Any, reason: str) -> bool:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if in_flight == 8:  # every one under way at once (one by one, the first waits forever)
            release.set()
        await release.wait()
        in_flight -= 1
        return bool(record.offset % 2 == 0)  # odd offsets carry no id to answer

    async def handle(batch: list[Received[int]]) -> None:
        return None

    records = [
        ConsumerRecord("t", 1, offset, 0, 0, b"k", b"not a number", None, 1, 1, [])
        for offset in range(8)
    ]
    dead = DeadLetters()
    sub = Subscription("t", "g", int, handle, int, "", on_invalid=answer)
    await asyncio.wait_for(BatchProcessor(sub, dead).process(records), timeout=30)  # type: ignore[arg-type]
    assert most == 8
    assert [offset for offset, _ in dead.sent] == [1, 3, 5, 7]
    assert dead.sends == 1
