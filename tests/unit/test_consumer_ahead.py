"""The read-ahead processor's bookkeeping (the real broker's part is in
tests/integration/test_consumer_ahead.py): each batch's own offsets are committed after its
effect, in order; a batch that fails beyond what the processor answers is not committed,
and its partitions and those of the batch read after it are read again from their start."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from servicekit.consumer import AheadBatchProcessor, Received, Subscription, Then
from tests.support.wait import wait_until


class Consumer:
    """What the processor asks of aiokafka's consumer, written down in order."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.log.append(("commit", {tp.partition: o for tp, o in offsets.items()}))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.log.append(("seek", tp.partition, offset))


class DeadLetters:
    async def send_many(self, failures: list[tuple[Any, str]], group: str | None) -> None:
        raise RuntimeError("the dead letters are broken")  # not transient: beyond narrowing


def _records(*where: tuple[int, int], value: bytes | None = None) -> list[Any]:
    return [
        ConsumerRecord("t", p, o, 0, 0, b"k", value or str(o).encode(), None, 1, 1, [])
        for p, o in where
    ]


def _processor(log: list[Any]) -> AheadBatchProcessor[int]:
    async def handle(batch: list[Received[int]]) -> None:
        log.append(("handled", [(item.record.partition, item.message) for item in batch]))

    sub = Subscription("t", "g", int, handle, int, "", ahead=True)
    processor = AheadBatchProcessor(sub, DeadLetters())  # type: ignore[arg-type]
    processor.subscriber = SimpleNamespace(consumer=Consumer(log))
    return processor


async def test_each_batch_commits_its_own_offsets_after_its_effect_in_order() -> None:
    log: list[Any] = []
    processor = _processor(log)
    await processor.take(_records((1, 0), (2, 7), (1, 1)))
    await processor.take(_records((1, 2), (1, 3)))
    await processor.settle()
    assert log == [
        ("handled", [(1, 0), (2, 7), (1, 1)]),
        ("commit", {1: 2, 2: 8}),
        ("handled", [(1, 2), (1, 3)]),
        ("commit", {1: 4}),
    ]
    assert processor.done_through == {1: 4, 2: 8}


async def test_a_batch_that_fails_is_read_again_with_the_one_read_after_it() -> None:
    log: list[Any] = []
    processor = _processor(log)
    await processor.take(_records((1, 0), (1, 1), value=b"not a number"))  # cannot be refused
    await processor.take(_records((1, 2), (3, 5)))  # read meanwhile: not handled
    await processor.settle()
    assert log == [("seek", 1, 0), ("seek", 3, 5)], "partition 1 stays at the failed batch"
    await processor.take(_records((1, 0), (1, 1)))  # read again, and taken
    await processor.settle()
    assert log[2:] == [("handled", [(1, 0), (1, 1)]), ("commit", {1: 2})]


async def test_the_next_batch_is_handled_while_the_last_ones_then_runs_and_commits_follow() -> None:
    log: list[Any] = []
    announced = asyncio.Event()

    async def handle(batch: list[Received[int]]) -> Then:
        handled = [item.message for item in batch]
        log.append(("handled", handled))

        async def announce() -> None:
            if handled == [0]:
                await announced.wait()  # the first batch's results wait for the broker
            log.append(("announced", handled))

        return announce

    sub = Subscription("t", "g", int, handle, int, "", ahead=True)
    processor = AheadBatchProcessor(sub, DeadLetters())  # type: ignore[arg-type]
    processor.subscriber = SimpleNamespace(consumer=Consumer(log))
    await processor.take(_records((1, 0)))
    await processor.take(_records((1, 1)))  # taken once the first batch's effect is stored

    async def second_announced() -> bool:
        return ("announced", [1]) in log

    await wait_until(second_announced, interval=0.005, what="the second batch's then")
    assert ("announced", [0]) not in log, "the second batch did not wait for the first's then"
    assert all(entry[0] != "commit" for entry in log), "no commit before the first's then"
    announced.set()
    await processor.settle()
    assert log[-3:] == [("announced", [0]), ("commit", {1: 1}), ("commit", {1: 2})]


async def test_a_then_that_fails_is_retried_before_its_offsets_are_committed() -> None:
    log: list[Any] = []
    failures = [RuntimeError("not transient"), OSError("the broker went away")]

    async def handle(batch: list[Received[int]]) -> Then:
        async def announce() -> None:
            if failures:
                raise failures.pop()
            log.append("announced")

        return announce

    sub = Subscription("t", "g", int, handle, int, "", ahead=True)
    processor = AheadBatchProcessor(sub, DeadLetters(), max_backoff=0.01)  # type: ignore[arg-type]
    processor.subscriber = SimpleNamespace(consumer=Consumer(log))
    await processor.take(_records((1, 0)))
    await processor.settle()
    assert log == ["announced", ("commit", {1: 1})]


async def test_then_behind_takes_the_next_batch_once_this_ones_effect_is_stored() -> None:
    log: list[Any] = []
    announced = asyncio.Event()

    async def handle(batch: list[Received[int]]) -> Then:
        log.append(("handled", [item.message for item in batch]))

        async def announce() -> None:
            await announced.wait()
            log.append("announced")

        return announce

    sub = Subscription("t", "g", int, handle, int, "", then_behind=True)
    processor = AheadBatchProcessor(sub, DeadLetters())  # type: ignore[arg-type]
    processor.subscriber = SimpleNamespace(consumer=Consumer(log))
    await processor.take(_records((1, 0)))
    assert log == [("handled", [0])], "stored before take returns; its then still to run"
    announced.set()
    await processor.settle()
    assert log == [("handled", [0]), "announced", ("commit", {1: 1})]
