"""A `wake_on_record` reader hands over a batch as soon as the fetcher has one: its poll
waits on aiokafka's getmany (which returns at the first fetched record, whatever its
timeout) and never sleeps after an empty poll; it stops polling once the reader stops."""

from __future__ import annotations

from typing import Any

import pytest
from faststream.kafka import KafkaBroker

from servicekit.consumer import IDLE_WAIT_MS, Subscription, subscribe


class _Consumer:
    """getmany as aiokafka answers it: nothing within the timeout, then two partitions."""

    def __init__(self, answers: list[dict[str, list[str]]]) -> None:
        self.answers = answers
        self.calls: list[tuple[int, int]] = []

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[str, list[str]]:
        self.calls.append((timeout_ms, max_records))
        return self.answers.pop(0)


class _DeadLetters:
    async def send_many(self, *_: Any) -> None:
        return None


def _subscriber(wake_on_record: bool) -> Any:
    async def handle(_: list[Any]) -> None:
        return None

    sub: Subscription[bytes] = Subscription(
        topic="t",
        group_id="g",
        decode=bytes,
        handle=handle,
        payload=bytes,
        description="test",
        max_records=7,
        wake_on_record=wake_on_record,
    )
    return subscribe(KafkaBroker("127.0.0.1:1"), sub, _DeadLetters()).subscriber  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_an_idle_poll_waits_on_the_fetcher_and_returns_the_first_records() -> None:
    subscriber = _subscriber(wake_on_record=True)
    subscriber.running = True
    consumer = _Consumer([{}, {}, {"p0": ["a", "b"], "p1": ["c"]}])
    assert await subscriber.get_msg(consumer) == ("a", "b", "c")
    assert consumer.calls == [(IDLE_WAIT_MS, 7)] * 3


@pytest.mark.asyncio
async def test_a_stopped_reader_polls_no_more() -> None:
    subscriber = _subscriber(wake_on_record=True)
    subscriber.running = False
    consumer = _Consumer([])
    assert await subscriber.get_msg(consumer) == ()
    assert consumer.calls == []


def test_other_readers_keep_faststreams_poll() -> None:
    subscriber = _subscriber(wake_on_record=False)
    assert "get_msg" not in vars(subscriber)
