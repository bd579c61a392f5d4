"""Kafka entrypoints: the audit service reads events, command results and alerts."""

from __future__ import annotations

from typing import Any

from contracts import (
    EVENT_ADAPTER,
    KEYS_COMMAND_RESULTS,
    KEYS_EVENTS,
    USAGE_ALERTS,
    Alert,
    CommandResult,
    Event,
)
from servicekit.consumer import Received, Subscription
from servicekit.inbox import record_consumed
from servicekit.runtime import Runtime

GROUP_ID = "audit"


def subscriptions(runtime: Runtime) -> list[Subscription[Any]]:
    async def record(batch: list[Received[Any]]) -> None:
        async with runtime.pool.acquire() as conn, conn.transaction():
            await record_consumed(conn, batch)

    return [
        Subscription(
            KEYS_EVENTS,
            GROUP_ID,
            EVENT_ADAPTER.validate_json,
            record,
            Event,
            "Every change to every key.",
        ),
        Subscription(
            KEYS_COMMAND_RESULTS,
            GROUP_ID,
            CommandResult.model_validate_json,
            record,
            CommandResult,
            "Command outcomes; rejected commands are audited too.",
        ),
        Subscription(
            USAGE_ALERTS,
            GROUP_ID,
            Alert.model_validate_json,
            record,
            Alert,
            "Alerts raised on unusual key activity.",
        ),
    ]
