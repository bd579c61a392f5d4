"""Publishes the stored limit states to usage.limits (idempotent producer, key = key_id).

A transactional outbox: the counter stores a state in the transaction of its counts and
wakes this loop; a change of state goes at once, a clear key's moved counts at most once
per `refresh_seconds`. A state is marked sent only after the broker has it, so a crash
sends it again on restart; a repeat is harmless (the topic is compacted and readers keep
the newer as_of).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from servicekit.periodic import Periodic
from servicekit.runtime import Topic
from services.usage.adapters import limit_store
from services.usage.app.metrics import LIMIT_STATES_PUBLISHED

BATCH = 1000


class LimitPublisher:
    def __init__(
        self,
        pool: Callable[[], Any],
        topic: Topic,
        refresh_seconds: float = 1.0,
        poll_seconds: float = 0.25,
    ) -> None:
        self._pool = pool
        self._topic = topic
        self._refresh = refresh_seconds
        self._loop = Periodic("usage-limit-publisher", poll_seconds, self.flush)

    def nudge(self) -> None:
        self._loop.nudge()

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop(final_run=True)  # what is left goes at the next start

    async def flush(self) -> int:
        pool = self._pool()
        sent = 0
        while due := await limit_store.due(pool, self._refresh, BATCH):
            await self._topic.send_many([(k.encode(), body.encode(), ()) for k, _, body in due])
            await limit_store.mark_published(pool, [(k, revision) for k, revision, _ in due])
            sent += len(due)
            LIMIT_STATES_PUBLISHED.inc(len(due))
            if len(due) < BATCH:
                break
        return sent
