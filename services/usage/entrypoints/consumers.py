"""Kafka entrypoints: usage records (counted and watched) and key events (read model)."""

from __future__ import annotations

from typing import Any

from contracts import EVENT_ADAPTER, Event, UsageRecord
from servicekit.consumer import Received, Subscription
from services.usage.app.context import UsageContext
from services.usage.app.ingest import Ingestor
from services.usage.app.key_events import apply_key_events
from services.usage.domain.requests import Request
from services.usage.entrypoints.records import decode_request
from services.usage.settings import UsageSettings


def subscriptions(
    settings: UsageSettings, ctx: UsageContext, ingestor: Ingestor
) -> list[Subscription[Any]]:
    async def ingest(batch: list[Received[Request]]) -> None:
        ranges: dict[tuple[str, int], tuple[int, int]] = {}
        for item in batch:
            position = (item.record.topic, item.record.partition)
            first, _ = ranges.get(position, (item.record.offset, 0))
            ranges[position] = (first, item.record.offset)
        ctx.cache.follow(ranges)
        await ingestor.ingest([item.message for item in batch])
        ctx.cache.consumed(ranges)

    async def key_events(batch: list[Received[Event]]) -> None:
        await apply_key_events(ctx, batch)

    return [
        Subscription(
            settings.usage_records_topic,
            settings.usage_consumer_group,
            decode_request,
            ingest,
            UsageRecord,
            "One record per API request, from the gateways (and the keys service's refusals).",
            max_records=settings.usage_batch_max_records,
            batch_timeout_ms=100,
        ),
        Subscription(
            settings.usage_keys_events_topic,
            settings.usage_consumer_group,
            EVENT_ADAPTER.validate_json,
            key_events,
            Event,
            "Key status, environment, limits and creation time, for the usage read model.",
            max_records=2000,
        ),
    ]
