"""Kafka entrypoints: the usage service reads usage records and key events."""

from __future__ import annotations

from typing import Any

from contracts import EVENT_ADAPTER, KEYS_EVENTS, USAGE_RECORDS, Event, UsageRecord
from servicekit.consumer import Received, Subscription
from servicekit.inbox import record_consumed
from servicekit.runtime import Runtime

GROUP_ID = "usage"


def subscriptions(runtime: Runtime) -> list[Subscription[Any]]:
    async def record(batch: list[Received[Any]]) -> None:
        async with runtime.pool.acquire() as conn, conn.transaction():
            await record_consumed(conn, batch)

    return [
        Subscription(
            USAGE_RECORDS,
            GROUP_ID,
            UsageRecord.model_validate_json,
            record,
            UsageRecord,
            "One record per API request, from the gateways.",
            max_records=2000,
        ),
        Subscription(
            KEYS_EVENTS,
            GROUP_ID,
            EVENT_ADAPTER.validate_json,
            record,
            Event,
            "Key status, environment and limits, for the usage read model.",
        ),
    ]
