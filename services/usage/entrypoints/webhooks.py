"""Kafka entrypoint of the webhooks: usage.alerts in a consumer group of its own, each
alert stored as the deliveries it calls for before the offsets are committed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts import USAGE_ALERTS, Alert
from servicekit.consumer import Received, Subscription
from services.usage.app.webhook_intake import take_alerts
from services.usage.settings import UsageSettings


def webhook_subscription(
    settings: UsageSettings, pool: Callable[[], Any], on_deliveries: Callable[[], None]
) -> Subscription[Alert]:
    async def intake(batch: list[Received[Alert]]) -> None:
        await take_alerts(pool(), batch, on_deliveries)

    return Subscription(
        settings.usage_webhooks_alerts_topic,
        settings.usage_webhooks_consumer_group,
        Alert.model_validate_json,
        intake,
        Alert,
        "Alerts to deliver to the accounts' webhooks (a group of its own).",
        max_records=500,
        batch_timeout_ms=20,
        title=f"{USAGE_ALERTS}:deliver-webhooks",
    )
