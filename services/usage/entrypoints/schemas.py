"""HTTP answers of the usage service (for the OpenAPI document and the clients)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from contracts import Alert
from contracts.base import UtcDatetime

Granularity = Literal["minute", "hour", "day"]


class UsageCounters(BaseModel):
    requests: int = Field(description="Requests made with the key.")
    status_2xx: int
    status_3xx: int
    status_4xx: int
    status_5xx: int
    auth_failures: int = Field(description="Requests refused with 401 or 403.")
    tokens_in: int
    tokens_out: int
    latency_avg_ms: float | None
    latency_max_ms: float | None


class UsageBucket(UsageCounters):
    start: UtcDatetime = Field(description="Start of the bucket (UTC, inclusive).")
    end: UtcDatetime = Field(description="End of the bucket (exclusive).")
    distinct_networks: int = Field(description="Distinct source /24 or /48 networks.")
    first_at: UtcDatetime
    last_at: UtcDatetime


class KeyUsage(BaseModel):
    key_id: UUID
    account_id: str
    granularity: Granularity
    from_: UtcDatetime = Field(alias="from", serialization_alias="from")
    to: UtcDatetime
    last_used_at: UtcDatetime | None = Field(
        description="The key's latest request not refused for the key (401, 403), to the minute."
    )
    totals: UsageCounters = Field(description="Over the buckets of this page.")
    items: list[UsageBucket] = Field(description="Buckets with usage, newest first.")
    next_cursor: str | None

    model_config = {"populate_by_name": True}


class AlertList(BaseModel):
    items: list[Alert]
    next_cursor: str | None


BUCKET_LENGTH: dict[str, timedelta] = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}
