"""Who publishes `keys.events`: one keys process at a time, by a PostgreSQL advisory lock.

A process that does not lead asks for the lock again every `retry_seconds` on the one
connection it keeps (not a new connection each second), and takes over on that connection
as soon as the leader's connection, and so its lock, is gone.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import asyncpg
import pytest

from services.keys.adapters.publisher import EventPublisher
from tests.support.stack import Stack
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack


class _Counted:
    """A real connection whose lock requests are counted."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.lock_requests = 0

    async def fetchval(self, query: str, *args: Any) -> Any:
        if "pg_try_advisory_lock" in query:
            self.lock_requests += 1
        return await self._conn.fetchval(query, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _Publisher(EventPublisher):
    """Leads on a lock of the test's own (the stack's keys service holds the real one) and
    publishes nothing: a round parks."""

    def __init__(self, dsn: str, lock_id: int) -> None:
        self.connections: list[_Counted] = []

        async def connect() -> _Counted:
            counted = _Counted(await asyncpg.connect(dsn))
            self.connections.append(counted)
            return counted

        super().__init__(connect, topic=None, retry_seconds=0.05, lock_id=lock_id)  # type: ignore[arg-type]

    async def _publish_once(self, conn: Any) -> int:
        await asyncio.sleep(3600)
        return 0


async def test_a_standby_asks_on_one_connection_and_takes_over_when_the_leader_goes(
    stack: Stack,
) -> None:
    lock_id = (1 << 40) + secrets.randbelow(1 << 49)
    leader, standby = (_Publisher(stack.database("keys"), lock_id) for _ in range(2))
    leader.start()
    try:
        await wait_until(lambda: _true(leader.is_leader), what="the first publisher leading")
        standby.start()

        async def asked_often() -> bool:
            return bool(standby.connections) and standby.connections[0].lock_requests >= 10

        await wait_until(asked_often, what="the standby asking for the lock ten times")
        assert not standby.is_leader
        assert len(standby.connections) == 1

        await leader.stop()  # its connection closes, and the lock with it
        await wait_until(lambda: _true(standby.is_leader), what="the standby taking over")
        assert len(standby.connections) == 1
    finally:
        await leader.stop()
        await standby.stop()
    assert all(c.is_closed() for p in (leader, standby) for c in p.connections)


async def _true(value: bool) -> bool:
    return value
