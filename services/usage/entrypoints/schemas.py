"""HTTP answers of the usage service (for the OpenAPI document and the clients)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from contracts import Alert
from contracts.base import UtcDatetime

Granularity = Literal["minute", "hour", "day"]


def shifted(at: datetime, by: timedelta) -> datetime:
    """`at + by`, held to the times there are (years 1 to 9999) rather than overflowing."""
    try:
        return at + by
    except OverflowError:
        return (datetime.max if by > timedelta(0) else datetime.min).replace(tzinfo=UTC)


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

    @staticmethod
    def sums(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The counters over buckets of the read model."""
        requests = sum(r["requests"] for r in rows)
        latency = sum(r["latency_sum_ms"] for r in rows)
        return {
            **{name: sum(r[name] for r in rows) for name in _SUMS},
            "latency_avg_ms": round(latency / requests, 3) if requests else None,
            "latency_max_ms": max((r["latency_max_ms"] for r in rows), default=None),
        }


_SUMS: Final = tuple(n for n in UsageCounters.model_fields if not n.startswith("latency_"))
"""The counters that add up: all but the latencies."""


class UsageBucket(UsageCounters):
    start: UtcDatetime = Field(description="Start of the bucket (UTC, inclusive).")
    end: UtcDatetime = Field(description="End of the bucket (exclusive).")
    distinct_networks: int = Field(description="Distinct source /24 or /48 networks.")
    first_at: UtcDatetime
    last_at: UtcDatetime

    @classmethod
    def of(cls, row: dict[str, Any], granularity: Granularity) -> UsageBucket:
        return cls(
            start=row["start"],
            end=shifted(row["start"], BUCKET_LENGTH[granularity]),
            distinct_networks=row["distinct_networks"],
            first_at=row["first_at"],
            last_at=row["last_at"],
            **cls.sums([row]),
        )


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
