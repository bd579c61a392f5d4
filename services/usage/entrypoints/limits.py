"""Kafka entrypoint of the limit counter: usage records in a consumer group of its own."""

from __future__ import annotations

from contracts import USAGE_RECORDS, UsageRecord
from servicekit.consumer import Received, Subscription
from services.usage.app.limit_counter import LimitCounter
from services.usage.domain.requests import Request
from services.usage.entrypoints.records import decode_request, decode_requests
from services.usage.settings import UsageSettings


def limit_subscription(settings: UsageSettings, counter: LimitCounter) -> Subscription[Request]:
    async def count(batch: list[Received[Request]]) -> None:
        await counter.count(batch)

    return Subscription(
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
