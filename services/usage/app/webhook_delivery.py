"""Delivers the pending webhook deliveries: claims the due ones (several usage processes
share the work, SKIP LOCKED), posts each signed, and records what came of it. A failure
is retried with backoff until the delivery has been tried for `give_up_seconds`; a
webhook that has failed every delivery for that long is disabled, with an alert."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from servicekit.logging import get_logger
from servicekit.periodic import Periodic
from services.usage.adapters import alert_store, webhook_sender, webhook_store
from services.usage.adapters.webhook_store import Due
from services.usage.app.metrics import WEBHOOK_ATTEMPTS, WEBHOOKS_DISABLED
from services.usage.domain.webhooks import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    WEBHOOK_ID_HEADER,
    Backoff,
    disabled_alert,
    signature,
)

log = get_logger(__name__)
BATCH = 50


@dataclass(frozen=True)
class DeliveryPolicy:
    allow_http: bool = False
    allow_private: bool = False
    backoff: Backoff = field(default_factory=Backoff)
    give_up_seconds: float = 86400.0
    timeout_seconds: float = 10.0

    @property
    def lease_seconds(self) -> float:
        """Longer than a try can take (resolution, connection, answer)."""
        return 3 * self.timeout_seconds + 10


class WebhookDeliverer:
    def __init__(
        self,
        pool: Callable[[], Any],
        policy: DeliveryPolicy,
        on_alerts: Callable[[], None],
        poll_seconds: float = 1.0,
        max_in_flight: int = 100,
    ) -> None:
        self._pool = pool
        self._policy = policy
        self._on_alerts = on_alerts
        self._loop = Periodic("webhook-deliveries", poll_seconds, self.deliver_due)
        self._max_in_flight = max_in_flight
        self._in_flight: set[asyncio.Task[None]] = set()
        timeout = httpx.Timeout(policy.timeout_seconds, connect=min(5.0, policy.timeout_seconds))
        # No proxies from the environment, no redirects: the address checked is the one used.
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False)

    def nudge(self) -> None:
        self._loop.nudge()

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        # What is in flight may finish for a moment; a delivery not recorded is tried
        # again when its lease ends (at most once more than needed).
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=2.0)
        for task in set(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self._client.aclose()

    async def deliver_due(self) -> int:
        """Starts the due deliveries, each on its own: a slow receiver holds up nobody
        else's. Returns how many were started."""
        started = 0
        while (room := self._max_in_flight - len(self._in_flight)) > 0:
            claim = min(room, BATCH)
            due = await webhook_store.claim_due(self._pool(), claim, self._policy.lease_seconds)
            for delivery in due:
                task = asyncio.create_task(self._deliver(delivery))
                self._in_flight.add(task)
                task.add_done_callback(self._finished)
            started += len(due)
            if len(due) < claim:
                break
        return started

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # Recording failed (e.g. the database is away): the lease brings it back.
            log.warning("webhook_delivery_unrecorded", error_type=type(error).__name__)
        self._loop.nudge()  # room for another; and whatever is due next

    async def _deliver(self, due: Due) -> None:
        headers = {
            SIGNATURE_HEADER: signature(due.secret, int(time.time()), due.body),
            DELIVERY_ID_HEADER: str(due.alert_id),
            WEBHOOK_ID_HEADER: str(due.webhook_id),
        }
        outcome = await webhook_sender.post(
            self._client, due.url, due.body, headers,
            allow_http=self._policy.allow_http, allow_private=self._policy.allow_private,
        )  # fmt: skip
        WEBHOOK_ATTEMPTS.labels("delivered" if outcome.delivered else "failed").inc()
        disabled = False
        async with self._pool().acquire() as conn, conn.transaction():
            if outcome.delivered:
                await webhook_store.record_success(conn, due, outcome.status_code or 200)
                return
            retry_in = self._policy.backoff.delay(due.attempts + 1)
            since = await webhook_store.record_failure(
                conn, due, outcome.status_code, outcome.error or "failed",
                retry_in, self._policy.give_up_seconds,
            )  # fmt: skip
            log.info(
                "webhook_delivery_failed", webhook_id=str(due.webhook_id),
                alert_id=str(due.alert_id), attempts=due.attempts + 1, error=outcome.error,
            )  # fmt: skip
            if since is not None and since <= _now() - timedelta(
                seconds=self._policy.give_up_seconds
            ):
                disabled = await self._disable(conn, due)
        if disabled:
            self._on_alerts()  # after the commit: the outbox then finds the alert

    async def _disable(self, conn: Any, due: Due) -> bool:
        webhook = await webhook_store.disable(conn, due.webhook_id)
        if webhook is None:
            return False
        alert = disabled_alert(
            due.webhook_id, webhook["account_id"], webhook["url"], webhook["failing_since"], _now()
        )
        await alert_store.insert_alerts(conn, [alert])
        WEBHOOKS_DISABLED.inc()
        log.warning("webhook_disabled", webhook_id=str(due.webhook_id))
        return True


def _now() -> datetime:
    return datetime.now(UTC)
