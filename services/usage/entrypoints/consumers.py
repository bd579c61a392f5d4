"""Kafka entrypoints: usage records (counted and watched) and key events (read model)."""

from __future__ import annotations

from typing import Any

from contracts import EVENT_ADAPTER, Event, UsageRecord
from servicekit.consumer import Received, Subscription
from services.usage.app.context import UsageContext
from services.usage.app.ingest import Ingestor
from services.usage.app.key_events import apply_key_events
from services.usage.domain.requests import Request
from services.usage.entrypoints.records import decode_request, decode_requests
from services.usage.settings import UsageSettings


def subscriptions(
    settings: UsageSettings, ctx: UsageContext, ingestor: Ingestor
) -> list[Subscription[Any]]:
    async def ingest(batch: list[Received[Request]]) -> None:
        records = [item.record for item in batch]
        # Each partition's first and last offset: a partition's records are in order.
        last = {(r.topic, r.partition): r.offset for r in records}
        first = {(r.topic, r.partition): r.offset for r in reversed(records)}
        ranges = {position: (first[position], offset) for position, offset in last.items()}
        ingestor.follow(ranges)
        await ingestor.ingest(
            settings.usage_records_topic, [item.message for item in batch], records, ranges
        )
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
            decode_many=decode_requests,
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
