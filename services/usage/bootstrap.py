"""The usage service's composition root: the one place its object graph is built."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from contracts import LimitState
from servicekit.periodic import Periodic
from servicekit.runtime import Runtime, collect_rarely, serve
from servicekit.settings import load_settings
from services.usage.app.limit_counter import LimitCounter
from services.usage.app.limit_directory import LimitDirectory
from services.usage.app.limit_publisher import LimitPublisher
from services.usage.domain.recent_ids import SharedIds
from services.usage.entrypoints.limits import limit_subscriptions
from services.usage.malloc import return_freed_memory
from services.usage.parts import Part, periodic, pool_of
from services.usage.settings import UsageSettings

DESCRIPTION = "Per-key usage from the gateways' records, and alerts on unusual key activity."
MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: UsageSettings) -> FastAPI:
    """The process of `settings.usage_role`: the ingest, the limit counter, or both."""
    runtime = Runtime(settings, MIGRATIONS, DESCRIPTION)
    seen_ids = SharedIds()  # one entry for an id both memories hold, where both run here
    parts: list[Part] = []
    if settings.usage_role in ("all", "limits"):
        parts += _limit_counter(runtime, settings, seen_ids)
    app_state: dict[str, object] = {}
    if settings.usage_role in ("all", "ingest"):
        # Only a process that runs the ingest loads its modules (services/usage/ingest_role.py).
        from services.usage.ingest_role import ingest_parts  # noqa: PLC0415

        parts += ingest_parts(runtime, settings, seen_ids, app_state)

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
        from services.usage.ingest_role import serve_api  # noqa: PLC0415 - loaded above

        serve_api(app, app_state)
    return app


def _limit_counter(runtime: Runtime, settings: UsageSettings, seen_ids: SharedIds) -> list[Part]:
    """The limit counter (docs/limits.md): records and key events in a group of its own,
    its states published to usage.limits, the windows rolled over every second."""
    pool = pool_of(runtime)
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
        shared_ids=seen_ids,
    )
    for subscription in limit_subscriptions(settings, limits):
        runtime.subscribe(subscription)
    return [
        Part(publisher.start, publisher.stop),
        periodic(Periodic("limit-roll-over", 1.0, limits.roll_over)),
        periodic(
            Periodic(
                "limit-directory-follow",
                settings.usage_directory_follow_seconds,
                limits.follow_directory,
            )
        ),
        periodic(Periodic("limit-counts-pruning", 60.0, limits.prune)),
    ]


def main() -> None:
    return_freed_memory()
    settings = load_settings(UsageSettings)
    app = build(settings)
    collect_rarely()
    serve(app, settings)
