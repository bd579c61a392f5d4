"""Puts every committed event on `keys.events`, at least once, in stream order per key.

One keys process at a time is the publisher: it holds a PostgreSQL advisory lock on a
connection of its own; when that process dies its connection closes, the lock is
released, and another process takes over within `retry_seconds`. The publisher first
sequences (gives committed events their global position), then sends events past its
stored checkpoint, waits for the broker's acknowledgement, and only then moves the
checkpoint (in the next round's statement, which follows at the next nudge, or within
`checkpoint_delay_seconds`). A crash between send and checkpoint re-sends: consumers
deduplicate on `event_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from contracts import event_headers
from servicekit.logging import get_logger
from servicekit.runtime import Topic
from services.keys.adapters import event_store

log = get_logger(__name__)
LOCK_ID = 0x1A57_0002
CHECKPOINT = "keys.events"


class Nudger:
    """Wakes the publisher in whichever process leads, after an append here committed.

    In the leading process that is an in-memory wake-up; for the others, one NOTIFY in a
    transaction of its own (no write, so no WAL flush), coalesced: however many appends
    commit meanwhile, at most one NOTIFY is in flight.
    """

    def __init__(self, publisher: EventPublisher, pool: Callable[[], Any]) -> None:
        self._publisher = publisher
        self._pool = pool
        self._pending = False
        self._sending: asyncio.Task[None] | None = None

    def nudge(self) -> None:
        if self._publisher.is_leader:
            self._publisher.nudge()
            return
        self._pending = True
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send())

    async def _send(self) -> None:
        while self._pending:
            self._pending = False
            try:
                await self._pool().execute("SELECT pg_notify($1, '')", event_store.NOTIFY_CHANNEL)
            except Exception as exc:  # the leader polls anyway; a lost wake-up only delays
                log.warning("publisher_nudge_failed", error=type(exc).__name__)
                return


class EventPublisher:
    def __init__(
        self,
        connect: Callable[[], Awaitable[Any]],
        topic: Topic,
        batch_size: int = 1000,
        idle_poll_seconds: float = 0.5,
        retry_seconds: float = 1.0,
        checkpoint_delay_seconds: float = 0.1,
        lock_id: int = LOCK_ID,
    ) -> None:
        self._connect = connect
        self._lock_id = lock_id
        self._topic = topic
        self._batch_size = batch_size
        self._idle_poll = idle_poll_seconds
        self._retry = retry_seconds
        self._checkpoint_delay = checkpoint_delay_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.is_leader = False
        self.published = 0
        self._checkpoint: int | None = None
        """How far the broker has acknowledged, while this process leads (only the leader
        moves the checkpoint)."""
        self._saved: int | None = None
        """The checkpoint as stored (the next round saves `_checkpoint` when it is ahead)."""

    def nudge(self) -> None:
        """Something was appended in this process: publish now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-publisher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        # A process that does not lead keeps one idle connection and asks for the lock on
        # it every `retry_seconds`, rather than opening a connection for each try. Leading
        # ends only by an exception; the lock goes with the connection, closed then.
        conn: Any = None
        try:
            while True:
                try:
                    if conn is None or conn.is_closed():
                        conn = await self._connect()
                    if await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_id):
                        await self._lead(conn)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database or broker went away: try again soon
                    log.warning("publisher_interrupted", error=f"{type(exc).__name__}: {exc}")
                    conn, closing = None, conn
                    await _close(closing)
                self.is_leader = False
                await asyncio.sleep(self._retry)
        finally:
            await _close(conn)

    async def _lead(self, conn: Any) -> None:
        """Publish on `conn`, which holds the lock, until it fails (it never returns)."""
        self.is_leader = True
        self._checkpoint = None  # read again: another process may have moved it
        log.info("publisher_leading")
        await conn.add_listener(event_store.NOTIFY_CHANNEL, lambda *_: self._wake.set())
        while True:
            # Cleared before the read, never after: a nudge that lands while this round
            # reads (an append committing just after its query) must start another round
            # at once, not wait out the idle poll.
            self._wake.clear()
            sent = await self._publish_once(conn)
            if sent < self._batch_size:  # a full round: more is due, go on at once
                # After a send, the round that saves its checkpoint waits for the next
                # nudge (it then sequences and sends too) or `checkpoint_delay` at most: no
                # round (a write, so a WAL flush) stands alone in the way of the next
                # append's events. An idle publisher polls `idle_poll`.
                wait = self._checkpoint_delay if sent else self._idle_poll
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            if conn.is_closed():
                raise ConnectionError("lost the publisher's connection (and its lock)")

    async def _publish_once(self, conn: Any) -> int:
        if self._checkpoint is None:
            self._checkpoint = self._saved = await event_store.checkpoint(conn, CHECKPOINT)
        checkpoint = self._checkpoint
        # One statement, atomic on its own: sequence what committed, save the checkpoint the
        # previous round's send earned, read what is due. A round that sent something is
        # followed by another at the next nudge (see _lead), which saves its checkpoint.
        events = await event_store.publishing_round(
            conn,
            checkpoint,
            self._batch_size,
            CHECKPOINT,
            checkpoint if checkpoint != self._saved else None,
        )
        self._saved = checkpoint
        if not events:
            return 0
        messages = []
        for event in events:
            envelope = event.envelope()
            messages.append(
                (
                    str(event.key_id).encode(),
                    envelope.model_dump_json().encode(),
                    event_headers(envelope),
                )
            )
        await self._topic.send_many(messages)
        self._checkpoint = events[-1].position or checkpoint
        self.published += len(events)
        return len(events)


async def _close(conn: Any) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            await conn.close()
