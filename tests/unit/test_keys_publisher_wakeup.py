"""The event publisher never sleeps through a wake-up that lands while it reads.

An append that commits just after a round's query nudges the publisher while that round is
still running; the round then finds nothing, and the publisher must start another round at
once instead of waiting out its idle poll (which, at 0.5 s, was the tail of revocation).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.keys.adapters.publisher import EventPublisher


class _Connection:
    """What the leading loop asks of its connection: the lock, a listener, liveness."""

    async def fetchval(self, *_: Any) -> bool:
        return True  # the advisory lock is ours

    async def add_listener(self, *_: Any) -> None:
        return None

    def is_closed(self) -> bool:
        return False

    async def close(self) -> None:
        return None


class _NudgedWhileReading(EventPublisher):
    """The first round is nudged mid-read and finds nothing; later rounds are counted."""

    def __init__(self) -> None:
        async def connect() -> _Connection:
            return _Connection()

        super().__init__(connect, topic=None, idle_poll_seconds=3600.0)  # type: ignore[arg-type]
        self.rounds = 0
        self.second_round = asyncio.Event()

    async def _publish_once(self, conn: Any) -> int:
        self.rounds += 1
        if self.rounds == 1:
            await asyncio.sleep(0)  # the round's query is in flight...
            self.nudge()  # ...when another append commits and nudges
            return 0  # the query did not see that append
        self.second_round.set()
        await asyncio.sleep(3600)  # park: nothing more to show
        return 0


async def _second_round(
    publisher: _NudgedWhileReading | _SentOnce, after_first: bool = False
) -> int:
    """Run `publisher` until its second round starts (nudged once the first is over, when
    `after_first`); returns how many rounds it ran."""
    publisher.start()
    try:
        if isinstance(publisher, _SentOnce) and after_first:
            await asyncio.wait_for(publisher.first_round.wait(), timeout=30)
            publisher.nudge()  # the next append committed: its round saves the checkpoint too
        await asyncio.wait_for(publisher.second_round.wait(), timeout=30)
    finally:
        await publisher.stop()
    return publisher.rounds


@pytest.mark.asyncio
async def test_a_nudge_during_a_round_starts_another_round_at_once() -> None:
    # The idle poll is an hour: only the kept wake-up can start the second round.
    assert await _second_round(_NudgedWhileReading()) == 2


class _SentOnce(EventPublisher):
    """The first round sends an event; the second (which saves its checkpoint) is counted."""

    def __init__(self, checkpoint_delay: float) -> None:
        async def connect() -> _Connection:
            return _Connection()

        super().__init__(
            connect,
            topic=None,  # type: ignore[arg-type]
            idle_poll_seconds=3600.0,
            checkpoint_delay_seconds=checkpoint_delay,
        )
        self.rounds = 0
        self.first_round = asyncio.Event()
        self.second_round = asyncio.Event()

    async def _publish_once(self, conn: Any) -> int:
        self.rounds += 1
        if self.rounds == 1:
            self.first_round.set()
            return 1  # sent one event: its checkpoint is for the next round to save
        self.second_round.set()
        await asyncio.sleep(3600)
        return 0


@pytest.mark.asyncio
async def test_after_a_send_the_next_nudge_starts_the_round_that_saves_the_checkpoint() -> None:
    assert await _second_round(_SentOnce(checkpoint_delay=3600.0), after_first=True) == 2


@pytest.mark.asyncio
async def test_after_a_send_without_a_nudge_the_checkpoint_is_saved_after_the_delay() -> None:
    assert await _second_round(_SentOnce(checkpoint_delay=0.01)) == 2  # idle poll: an hour
