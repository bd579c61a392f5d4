"""Publishes what the transactions stored: alerts to usage.alerts, then the containment
commands to keys.commands. Woken right after a commit that stored alerts, and every
second for whatever a crash left behind. At least once: consumers dedupe by id."""

from __future__ import annotations

from typing import Any

from servicekit.logging import get_logger
from servicekit.periodic import Periodic
from servicekit.runtime import Topic
from services.usage.adapters import alert_store

log = get_logger(__name__)
BATCH = 500


class Outbox:
    def __init__(self, pool: Any, alerts: Topic, commands: Topic, interval: float = 1.0) -> None:
        self._pool = pool
        self._alerts = alerts
        self._commands = commands
        self._loop = Periodic("usage-outbox", interval, self.flush)

    def nudge(self) -> None:
        self._loop.nudge()

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop(final_run=True)  # a last attempt; what is left goes next start

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
