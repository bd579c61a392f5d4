"""Kafka entrypoints of the limit counter: usage records and key events, in a consumer
group of its own."""

from __future__ import annotations

from typing import Any

from contracts import EVENT_ADAPTER, KEYS_EVENTS, USAGE_RECORDS, Event, UsageRecord
from servicekit.consumer import Received, Subscription
from services.usage.app.limit_counter import LimitCounter
from services.usage.domain.requests import Request
from services.usage.entrypoints.records import decode_request, decode_requests
from services.usage.settings import UsageSettings


def limit_subscriptions(settings: UsageSettings, counter: LimitCounter) -> list[Subscription[Any]]:
    async def count(batch: list[Received[Request]]) -> None:
        await counter.count(batch)

    async def key_events(batch: list[Received[Event]]) -> None:
        await counter.key_events(batch)

    records = Subscription(
        settings.usage_limits_records_topic or settings.usage_records_topic,
        settings.usage_limits_consumer_group,
        decode_request,
        count,
        UsageRecord,
        "Every record counted against its key's limits (a group of its own: enforcement"
        " never waits on the analytic ingest).",
        max_records=settings.usage_limits_batch_max_records,
        batch_timeout_ms=20,
        title=f"{USAGE_RECORDS}:count-limits",
        decode_many=decode_requests,  # a batch at once, as the analytic ingest decodes
    )
    events = Subscription(
        settings.usage_keys_events_topic,
        settings.usage_limits_consumer_group,
        EVENT_ADAPTER.validate_json,
        key_events,
        Event,
        "Each key's limits, for the limit counter's own read model (limit_directory).",
        max_records=2000,
        title=f"{KEYS_EVENTS}:count-limits",
    )
    return [records, events]
