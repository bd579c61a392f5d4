"""The usage service's composition root: the one place its object graph is built."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI

from contracts import KEYS_COMMANDS, USAGE_ALERTS, Alert, DisableKey, LimitState
from servicekit.callers import CallerDirectory, key_change_subscription
from servicekit.periodic import Periodic
from servicekit.runtime import Runtime, collect_rarely, serve
from servicekit.settings import load_settings
from services.usage.app.activity_cache import ActivityCache
from services.usage.app.context import UsageContext
from services.usage.app.directory import KeyDirectory
from services.usage.app.ingest import Ingestor
from services.usage.app.limit_counter import LimitCounter
from services.usage.app.limit_directory import LimitDirectory
from services.usage.app.limit_publisher import LimitPublisher
from services.usage.app.outbox import Outbox
from services.usage.app.unused import find_unused_keys
from services.usage.app.warnings import warn_of_deadlines
from services.usage.app.webhook_delivery import DeliveryPolicy, WebhookDeliverer
from services.usage.app.webhook_registry import WebhookRegistry
from services.usage.domain.webhooks import Backoff
from services.usage.entrypoints.consumers import subscriptions
from services.usage.entrypoints.http import api_router
from services.usage.entrypoints.limits import limit_subscriptions
from services.usage.entrypoints.webhooks import webhook_subscription
from services.usage.malloc import return_freed_memory
from services.usage.settings import UsageSettings

DESCRIPTION = "Per-key usage from the gateways' records, and alerts on unusual key activity."
MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: UsageSettings) -> FastAPI:
    """The process of `settings.usage_role`: the ingest, the limit counter, or both."""
    runtime = Runtime(settings, MIGRATIONS, DESCRIPTION)
    parts: list[Part] = []
    if settings.usage_role in ("all", "limits"):
        parts += _limit_counter(runtime, settings)
    app_state: dict[str, object] = {}
    if settings.usage_role in ("all", "ingest"):
        parts += _ingest(runtime, settings, app_state)

    async def start() -> None:
        for part in parts:
            await part.start()

    async def stop() -> None:
        for part in reversed(parts):
            await part.stop()

    runtime.on_start(start)
    runtime.on_stop(stop)
    app = runtime.create_app()
    if app_state:
        app.include_router(api_router)
        for name, value in app_state.items():
            setattr(app.state, name, value)
    return app


class Part:
    """Something a process starts after its subscriptions and stops before them."""

    def __init__(
        self,
        start: Callable[[], object],
        stop: Callable[[], Awaitable[object]],
        after_start: Callable[[], object] = lambda: None,
    ) -> None:
        self._start, self._stop, self._after_start = start, stop, after_start

    async def start(self) -> None:
        started = self._start()
        if inspect.isawaitable(started):
            await started
        self._after_start()

    async def stop(self) -> None:
        await self._stop()


def _periodic(worker: Periodic) -> Part:
    return Part(worker.start, worker.stop)


def _pool(runtime: Runtime) -> Callable[[], object]:
    return lambda: runtime.pool


def _limit_counter(runtime: Runtime, settings: UsageSettings) -> list[Part]:
    """The limit counter (docs/limits.md): records and key events in a group of its own,
    its states published to usage.limits, the windows rolled over every second."""
    pool = _pool(runtime)
    publisher = LimitPublisher(
        pool,
        runtime.writes(
            settings.usage_limits_topic,
            LimitState,
            "Each key's limit state (compacted, keyed by key_id): on every change at once,"
            " and a clear key's counts at most about once a second.",
        ),
        refresh_seconds=settings.usage_limits_refresh_seconds,
    )
    limits = LimitCounter(
        pool,
        LimitDirectory(),
        settings.usage_limits_records_topic or settings.usage_records_topic,
        horizon_minutes=settings.usage_limits_dedup_horizon_minutes,
        max_ids=settings.usage_limits_dedup_max_ids,
        refresh_seconds=settings.usage_limits_refresh_seconds,
        on_states=publisher.nudge,
    )
    for subscription in limit_subscriptions(settings, limits):
        runtime.subscribe(subscription)
    return [
        Part(publisher.start, publisher.stop),
        _periodic(Periodic("limit-roll-over", 1.0, limits.roll_over)),
        _periodic(Periodic("limit-counts-pruning", 60.0, limits.prune)),
    ]


def _ingest(runtime: Runtime, settings: UsageSettings, app_state: dict[str, object]) -> list[Part]:
    """The analytic ingest, its detectors and alerts, webhooks and the HTTP API's state."""
    pool = _pool(runtime)
    outbox = Outbox(
        pool,
        runtime.writes(USAGE_ALERTS, Alert, "Alerts on unusual key activity, keyed by key_id."),
        runtime.writes(
            KEYS_COMMANDS, DisableKey, "DisableKey under the containment policy (off by default)."
        ),
    )
    ctx = UsageContext(
        pool=pool,
        directory=KeyDirectory(),
        cache=ActivityCache(),
        config=settings.detectors,
        policy=settings.containment,
        dedup_horizon_minutes=settings.usage_dedup_horizon_minutes,
        dedup_memory_ids=settings.usage_dedup_memory_ids,
        on_alerts=outbox.nudge,
        key_expiring_days=settings.usage_key_expiring_days,
    )
    ingestor = Ingestor(ctx)
    callers = CallerDirectory(settings.keys_service_url, ttl=settings.usage_caller_cache_seconds)
    for subscription in subscriptions(settings, ctx, ingestor):
        runtime.subscribe(subscription)
    runtime.subscribe(key_change_subscription(callers))
    webhook_policy = DeliveryPolicy(
        allow_http=settings.usage_webhooks_allow_http,
        allow_private=settings.usage_webhooks_allow_private,
        backoff=Backoff(
            settings.usage_webhooks_backoff_base_seconds,
            settings.usage_webhooks_backoff_cap_seconds,
        ),
        give_up_seconds=settings.usage_webhooks_give_up_seconds,
        timeout_seconds=settings.usage_webhooks_timeout_seconds,
    )
    deliverer = WebhookDeliverer(
        pool, webhook_policy, outbox.nudge, settings.usage_webhooks_poll_seconds
    )
    runtime.subscribe(webhook_subscription(settings, pool, deliverer.nudge))

    async def evict_idle() -> None:
        async with ctx.lock:
            ctx.cache.evict_idle()

    deadlines = Periodic(
        "deadline-warnings",
        settings.usage_warning_scan_seconds,
        lambda: warn_of_deadlines(ctx, ctx.key_expiring_days),
    )
    app_state.update(
        usage=ctx,
        callers=callers,
        webhooks=WebhookRegistry(pool, webhook_policy, settings.usage_webhooks_max_per_account),
    )
    return [
        Part(callers.start, callers.stop),
        Part(outbox.start, outbox.stop),
        Part(deliverer.start, deliverer.stop),
        _periodic(Periodic("dedup-horizon", 60.0, ingestor.prune)),
        _periodic(
            Periodic("idle-key-eviction", settings.usage_idle_key_eviction_seconds / 2, evict_idle)
        ),
        _periodic(
            Periodic(
                "unused-keys",
                settings.usage_unused_key_scan_seconds,
                lambda: find_unused_keys(ctx),
            )
        ),
        # a scan at start: a restart never waits a whole interval
        Part(deadlines.start, deadlines.stop, after_start=deadlines.nudge),
    ]


def main() -> None:
    return_freed_memory()
    settings = load_settings(UsageSettings)
    app = build(settings)
    collect_rarely()
    serve(app, settings)
