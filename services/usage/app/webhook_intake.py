"""Alerts from usage.alerts become pending deliveries, one per webhook of the alert's
account that wants it, stored before the batch's offsets are committed (at least once;
a redelivered alert finds its delivery already there). The body kept is the message's
bytes: the bytes signed and sent are those the topic carries."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from contracts import Alert
from servicekit.consumer import Received
from services.usage.adapters import webhook_store
from services.usage.domain.webhooks import SEVERITY_RANK


async def take_alerts(
    pool: Any, batch: Sequence[Received[Alert]], on_deliveries: Callable[[], None]
) -> int:
    rows = [
        (
            item.message.alert_id,
            item.message.account_id,
            item.message.kind,
            item.message.severity,
            SEVERITY_RANK[item.message.severity],
            item.message.detected_at,
            bytes(item.record.value or b""),
        )
        for item in batch
    ]
    added = await webhook_store.add_deliveries(pool, rows)
    if added:
        on_deliveries()
    return added
