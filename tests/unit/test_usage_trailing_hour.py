"""The trailing hour reads the same whether its ring is allocated or not (one minute in
use so far): checked against a plain count of every minute."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.usage.domain.trailing_hour import HOUR_MINUTES, TrailingHour


def _reference(adds: list[tuple[int, int]]) -> list[int]:
    counts: dict[int, int] = {}
    latest = -1
    totals = []
    for minute, n in adds:
        latest = max(latest, minute)
        if minute > latest - HOUR_MINUTES:
            counts[minute] = counts.get(minute, 0) + n
        totals.append(sum(c for m, c in counts.items() if m > latest - HOUR_MINUTES))
    return totals


@settings(max_examples=500, deadline=None)
@given(
    st.integers(1000, 10**6),
    st.lists(st.tuples(st.integers(-150, 150), st.integers(1, 5)), min_size=1, max_size=40),
)
def test_the_hour_total_is_the_count_of_its_minutes(
    base: int, steps: list[tuple[int, int]]
) -> None:
    adds = [(base + offset, n) for offset, n in steps]
    hour = TrailingHour()
    assert [hour.add(minute, n) for minute, n in adds] == _reference(adds)


def test_one_minute_in_use_allocates_no_ring() -> None:
    hour = TrailingHour()
    assert [hour.add(500), hour.add(500, 2), hour.add(700)] == [1, 3, 1]
    assert hour.counts is None
    assert hour.add(701) == 2 and hour.counts is not None
