"""The ingest role's parts (USAGE_ROLE ingest or all): the analytic ingest, its detectors
and alerts, webhooks and the HTTP API. Imported only by a process that runs it: the limit
counter's process does without these modules (httpx, the API's routes and schemas:
~4 MB of its memory, measured by importing each set alone)."""

from __future__ import annotations

from fastapi import FastAPI

from contracts import KEYS_COMMANDS, USAGE_ALERTS, Alert, DisableKey
from servicekit.callers import CallerDirectory, key_change_subscription
from servicekit.periodic import Periodic
from servicekit.runtime import Runtime
from services.usage.app.activity_cache import ActivityCache
from services.usage.app.context import UsageContext
from services.usage.app.directory import KeyDirectory
from services.usage.app.ingest import Ingestor
from services.usage.app.outbox import Outbox
from services.usage.app.unused import find_unused_keys
from services.usage.app.warnings import warn_of_deadlines
from services.usage.app.webhook_delivery import DeliveryPolicy, WebhookDeliverer
from services.usage.app.webhook_registry import WebhookRegistry
from services.usage.domain.recent_ids import SharedIds
from services.usage.domain.webhooks import Backoff
from services.usage.entrypoints.consumers import subscriptions
from services.usage.entrypoints.http import api_router
from services.usage.entrypoints.webhooks import webhook_subscription
from services.usage.parts import Part, periodic, pool_of
from services.usage.settings import UsageSettings


def ingest_parts(
    runtime: Runtime,
    settings: UsageSettings,
    seen_ids: SharedIds,
    app_state: dict[str, object],
) -> list[Part]:
    """The analytic ingest, its detectors and alerts, webhooks and the HTTP API's state."""
    pool = pool_of(runtime)
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
        seen_ids=seen_ids,
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

    async def follow_directory() -> int:
        """The keys other ingest processes stored (their partitions of keys.events)."""
        async with ctx.lock, ctx.pool().acquire() as conn:
            return await ctx.directory.follow(conn)

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
        periodic(Periodic("dedup-horizon", 60.0, ingestor.prune)),
        periodic(
            Periodic(
                "key-directory-follow", settings.usage_directory_follow_seconds, follow_directory
            )
        ),
        periodic(
            Periodic("idle-key-eviction", settings.usage_idle_key_eviction_seconds / 2, evict_idle)
        ),
        periodic(
            Periodic(
                "unused-keys",
                settings.usage_unused_key_scan_seconds,
                lambda: find_unused_keys(ctx),
            )
        ),
        # a scan at start: a restart never waits a whole interval
        Part(deadlines.start, deadlines.stop, after_start=deadlines.nudge),
    ]


def serve_api(app: FastAPI, app_state: dict[str, object]) -> None:
    """The HTTP API's routes on `app`, with the state they read."""
    app.include_router(api_router)
    for name, value in app_state.items():
        setattr(app.state, name, value)
