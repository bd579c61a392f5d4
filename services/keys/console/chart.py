"""A key's usage over time as an SVG line chart, drawn on the server: no chart library
and no script in the browser, and the same numbers as a table for screen readers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28

RANGES: dict[str, tuple[timedelta, timedelta, str]] = {
    # name: (span, bucket, usage API granularity)
    "24h": (timedelta(hours=24), timedelta(hours=1), "hour"),
    "7d": (timedelta(days=7), timedelta(hours=6), "hour"),
}


@dataclass(frozen=True)
class Bucket:
    start: datetime
    requests: int
    errors: int


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass
class Chart:
    range_name: str
    buckets: list[Bucket]
    peak: int
    requests_points: str = ""
    errors_points: str = ""
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[tuple[float, int]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    plot_bottom: int = HEIGHT - BOTTOM

    @property
    def total_requests(self) -> int:
        return sum(b.requests for b in self.buckets)

    @property
    def total_errors(self) -> int:
        return sum(b.errors for b in self.buckets)


def build_chart(range_name: str, now: datetime, usage_items: list[dict[str, Any]]) -> Chart:
    """Dense buckets over the range (zeros where the usage API had none), then geometry."""
    span, step, _ = RANGES[range_name]
    end = _floor(now, step) + step
    start = end - span
    count = int(span / step)
    requests = [0] * count
    errors = [0] * count
    for item in usage_items:
        at = moment(item["start"])
        index = int((at - start) / step)
        if 0 <= index < count:
            requests[index] += int(item["requests"])
            errors[index] += int(item["status_4xx"]) + int(item["status_5xx"])
    buckets = [Bucket(start + i * step, requests[i], errors[i]) for i in range(count)]
    peak = max([*requests, 1])
    chart = Chart(range_name, buckets, peak)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return round(LEFT + plot_w * (i + 0.5) / count, 1)

    def y(value: int) -> float:
        return round(TOP + plot_h * (1 - value / peak), 1)

    chart.requests_points = " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(requests))
    chart.errors_points = " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(errors))
    every = max(1, count // 6)
    chart.x_ticks = [
        Tick(x(i), _label(buckets[i].start, range_name)) for i in range(0, count, every)
    ]
    chart.y_ticks = [(y(v), v) for v in sorted({0, peak // 2, peak})]
    return chart


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // step) * step


def moment(value: str | datetime) -> datetime:
    """A time as the audit and usage APIs write it (ISO 8601), or already parsed."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _label(moment: datetime, range_name: str) -> str:
    return moment.strftime("%H:%M") if range_name == "24h" else moment.strftime("%a %H:%M")
