"""Group commit never leaves a writer waiting, whoever is cancelled and when.

The statement's effects (conflicts, atomicity, commit) are proven on the real database in
tests/integration/test_keys_append_statements.py; here, connections that only count the
statements they are asked to send, and hold them until the test opens a gate, show the
hand-over of the lead: a lone append goes at once, a writer cancelled while it waits is
left out, a leader cancelled mid-statement still writes its group, and a writer cancelled
as its turn to lead comes passes it on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.keys.app.group_commit import Append, GroupCommit


class _Connection:
    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate
        self.sent = 0
        self.done = 0

    async def execute(self, *_: Any) -> None:
        self.sent += 1
        await self.gate.wait()
        self.done += 1


async def _until(condition: Any) -> None:
    """Let the other tasks run until `condition()` holds (no clock involved)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the state never came")


def _append() -> Append:
    return Append(events=[], final={}, results=[])


class _InFlight:
    """A group commit whose first append's statement is in flight on `conns[0]` until
    `gate` opens; `conns[1:]` for the writers that come meanwhile."""

    def __init__(self, writers: int) -> None:
        self.gate = asyncio.Event()
        self.conns = [_Connection(self.gate) for _ in range(writers)]
        self.group = GroupCommit()
        self.first: asyncio.Future[None] = asyncio.Future()

    async def start(self) -> _InFlight:
        self.first = asyncio.ensure_future(self.group.append(self.conns[0], _append()))
        await _until(lambda: self.conns[0].sent == 1)
        return self

    async def meanwhile(self, *appends: Append) -> list[asyncio.Future[None]]:
        """The writers of `conns[1:]` come with `appends` (fresh ones if none are given)
        while the first is in flight; returns their futures once all of them wait."""
        appends = appends or tuple(_append() for _ in self.conns[1:])
        writers: list[asyncio.Future[None]] = [
            asyncio.ensure_future(self.group.append(conn, append))
            for conn, append in zip(self.conns[1:], appends, strict=True)
        ]
        await _until(lambda: self.group.waiting == len(writers))
        return writers


async def test_a_lone_append_goes_at_once() -> None:
    gate = asyncio.Event()
    gate.set()
    conn, group = _Connection(gate), GroupCommit()

    await group.append(conn, _append())
    await group.append(conn, _append())

    assert (conn.sent, group.statements, group.appends, group.waiting) == (2, 2, 2, 0)


async def test_those_waiting_go_in_one_statement_on_the_next_leaders_connection() -> None:
    flight = await _InFlight(4).start()
    gate, conns, group, first = flight.gate, flight.conns, flight.group, flight.first
    others = await flight.meanwhile()

    gate.set()
    await asyncio.gather(first, *others)

    assert [c.sent for c in conns] == [1, 1, 0, 0]
    assert (group.statements, group.appends, group.waiting) == (2, 4, 0)


async def test_a_writer_cancelled_while_it_waits_is_left_out() -> None:
    flight = await _InFlight(3).start()
    gate, conns, group, first = flight.gate, flight.conns, flight.group, flight.first
    gone, stays = await flight.meanwhile()

    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert group.waiting == 1
    gate.set()
    await asyncio.gather(first, stays)

    assert [c.sent for c in conns] == [1, 0, 1], "the one left leads its own statement"


async def test_a_leader_cancelled_mid_statement_still_writes_its_group() -> None:
    flight = await _InFlight(3).start()
    gate, conns, group, leader = flight.gate, flight.conns, flight.group, flight.first
    followers = await flight.meanwhile()

    leader.cancel()
    await asyncio.sleep(0)
    assert not leader.done(), "its statement is still in flight"
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert conns[0].done == 1, "cancelled only once its statement ended"
    await asyncio.gather(*followers)
    assert sum(c.done for c in conns) == 2 and group.waiting == 0


async def test_a_writer_cancelled_as_its_turn_to_lead_comes_passes_it_on() -> None:
    flight = await _InFlight(3).start()
    gate, conns, group, first = flight.gate, flight.conns, flight.group, flight.first
    waits = _append()
    turn, last = await flight.meanwhile(waits, _append())
    assert waits.outcome is not None
    waits.outcome.add_done_callback(lambda _: turn.cancel())  # as the lead is handed over

    gate.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await turn
    await asyncio.wait_for(last, timeout=10)  # a bound on a hang, not a timing

    assert (conns[1].sent, conns[2].done) == (0, 1), "`turn` wrote nothing, `last` led"
    await asyncio.wait_for(group.append(conns[0], _append()), timeout=10)
    assert group.waiting == 0 and conns[0].done == 2, "and the next lone append goes at once"
