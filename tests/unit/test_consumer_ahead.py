"""The read-ahead processor's bookkeeping (the real broker's part is in
tests/integration/test_consumer_ahead.py): each batch's own offsets are committed after its
effect, in order; a batch that fails beyond what the processor answers is not committed,
and its partitions and those of the batch read after it are read again from their start."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from servicekit.consumer import AheadBatchProcessor, Received, Subscription


class Consumer:
    """What the processor asks of aiokafka's consumer, written down in order."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.log.append(("commit", {tp.partition: o for tp, o in offsets.items()}))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.log.append(("seek", tp.partition, offset))


class DeadLetters:
    async def send(self, record: Any, error: str, group: str | None) -> None:
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
