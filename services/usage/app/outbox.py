"""Publishes what the transactions stored: alerts to usage.alerts, then the containment
commands to keys.commands. Woken right after a commit that stored alerts, and every
second for whatever a crash left behind. At least once: consumers dedupe by id."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from servicekit.logging import get_logger
from servicekit.runtime import Topic
from services.usage.adapters import alert_store

log = get_logger(__name__)
BATCH = 500


class Outbox:
    def __init__(self, pool: Any, alerts: Topic, commands: Topic, interval: float = 1.0) -> None:
        self._pool = pool
        self._alerts = alerts
        self._commands = commands
        self._interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def nudge(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):  # a last attempt; what is left goes next start
            await self.flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:  # the next round retries
                log.warning("outbox_flush_failed", error=f"{type(exc).__name__}: {exc}")

    async def flush(self) -> int:
        pool = self._pool()
        sent = 0
        while alerts := await alert_store.unpublished_alerts(pool, BATCH):
            await self._alerts.send_many([(k.encode(), b.encode(), ()) for _, k, b in alerts])
            await alert_store.mark_published(pool, [i for i, _, _ in alerts])
            sent += len(alerts)
        while commands := await alert_store.unsent_commands(pool, BATCH):
            await self._commands.send_many([(k.encode(), b.encode(), ()) for _, k, b in commands])
            await alert_store.mark_sent(pool, [i for i, _, _ in commands])
            log.info("containment_commands_sent", count=len(commands))
            sent += len(commands)
        return sent
