"""The limit counter's rules without a broker: windows, counting, the state of a key."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from contracts import KeyUpdatedData, LimitName, LimitState, TokenBudget, window_bounds
from contracts.examples import example_events
from contracts.limits import BudgetPeriod
from services.usage.app.limit_counter import LimitCounter
from services.usage.app.limit_directory import LimitDirectory
from services.usage.domain.keys import KeyInfo, fold
from services.usage.domain.limits import (
    SPANS,
    BatchCounts,
    KeyLimits,
    Span,
    evaluate,
    totals_of,
    window_start,
)
from services.usage.domain.recent_ids import RecentIds
from services.usage.domain.requests import Request

KEY = str(uuid.uuid4())
AT = datetime(2026, 12, 31, 23, 59, 30, 250000, tzinfo=UTC).timestamp()
_NAMES: dict[Span, LimitName] = {
    "minute": "rate_limit_per_minute",
    "hour": "rate_limit_per_hour",
    "day": "rate_limit_per_day",
    "month": "token_budget",
}


def request(at: float = AT, status: int = 200, tokens: int = 0, key: str = KEY) -> Request:
    return Request(str(uuid.uuid4()), key, "acme", at, int(at // 60), "203.0.113.0/24",
                   status, tokens, 0, 1.0)  # fmt: skip


@pytest.mark.parametrize("span", SPANS)
@pytest.mark.parametrize(
    "moment",
    [AT, datetime(2026, 2, 28, 12, 0, tzinfo=UTC).timestamp(), 0.0, 1_700_000_000.999],
)
def test_window_starts_agree_with_the_contracts_bounds(span: Span, moment: float) -> None:
    period: BudgetPeriod = "month" if span == "month" else "day"
    start, _ = window_bounds(_NAMES[span], period, datetime.fromtimestamp(moment, UTC))
    assert window_start(span, moment) == int(start.timestamp())


def test_refusals_are_not_requests_and_a_batch_counts_every_window() -> None:
    counts = BatchCounts()
    for status in (401, 403, 429):
        assert not counts.add(request(status=status))
    assert counts.add(request(status=500, tokens=7))
    assert counts.add(request(status=429, tokens=3))  # a refusal's tokens still count
    assert totals_of(counts.windows[KEY]) == {
        (span, window_start(span, AT)): (
            0 if span == "month" else 1,
            0 if span in ("minute", "hour") else 10,
        )
        for span in SPANS
    }
    assert counts.newest[KEY] == (AT, "acme")


def test_a_newer_window_starts_again_and_an_older_record_counts_only_where_it_belongs() -> None:
    counts = BatchCounts()
    counts.add(request(at=AT))  # 23:59:30 on the last day of the year
    counts.add(request(at=AT + 40, tokens=5))  # the next minute, hour, day, month
    counts.add(request(at=AT - 60, tokens=2))  # late: 23:58, same hour, day and month
    windows = totals_of(counts.windows[KEY])
    after = AT + 40
    assert windows == {
        ("minute", window_start("minute", after)): (1, 0),
        ("hour", window_start("hour", after)): (1, 0),
        ("day", window_start("day", after)): (1, 5),
        ("month", window_start("month", after)): (0, 5),
    }
    late = BatchCounts()
    late.add(request(at=AT))
    late.add(request(at=AT - 60, tokens=2))
    assert totals_of(late.windows[KEY])[("hour", window_start("hour", AT))] == (2, 0)
    assert totals_of(late.windows[KEY])[("minute", window_start("minute", AT))] == (1, 0)
    assert totals_of(late.windows[KEY])[("day", window_start("day", AT))] == (2, 2)


def totals(requests: int, tokens: int = 0) -> dict[tuple[Span, int], tuple[int, int]]:
    return {(span, window_start(span, AT)): (requests, tokens) for span in SPANS}


def test_a_rate_limit_reached_limits_the_key_until_its_window_ends() -> None:
    limits = KeyLimits(per_minute=100, per_hour=1000)
    state = LimitState.model_validate_json(evaluate(KEY, "acme", limits, totals(100), AT).body)
    assert (state.state, state.limit_name, state.counted, state.limit) == (
        "rate_limited",
        "rate_limit_per_minute",
        100,
        100,
    )
    assert state.until == datetime(2027, 1, 1, tzinfo=UTC)
    assert state.windows["rate_limit_per_hour"].counted == 100
    assert state.windows["rate_limit_per_hour"].reset_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert state.as_of == datetime.fromtimestamp(AT, UTC)


def test_below_every_limit_the_key_is_clear_with_what_each_window_counted() -> None:
    limits = KeyLimits(per_day=5, budget=10_000, budget_period="month")
    evaluated = evaluate(KEY, "acme", limits, totals(4, 9_999), AT)
    state = LimitState.model_validate_json(evaluated.body)
    assert (state.state, state.limit_name, state.until) == ("clear", None, None)
    assert {name: (w.counted, w.limit) for name, w in state.windows.items()} == {
        "rate_limit_per_day": (4, 5),
        "token_budget": (9_999, 10_000),
    }


def test_the_limit_whose_window_ends_last_decides() -> None:
    limits = KeyLimits(per_minute=1, budget=100, budget_period="month")
    evaluated = evaluate(KEY, "acme", limits, totals(1, 12_000), AT)
    assert (evaluated.state, evaluated.limit_name) == ("budget_exhausted", "token_budget")
    assert evaluated.until == datetime(2027, 1, 1, tzinfo=UTC).timestamp()


def test_a_key_without_limits_is_clear() -> None:
    assert not KeyLimits()
    evaluated = evaluate(KEY, "acme", KeyLimits(), {}, AT)
    assert LimitState.model_validate_json(evaluated.body).windows == {}


def test_the_directory_folds_the_limits_of_created_and_updated_keys() -> None:
    created, updated = example_events()[:2]
    key = fold(None, created)
    assert key is not None
    assert key.limits == KeyLimits(60, 1000, None, 2_000_000, "month")
    after = fold(key, updated)
    assert after is not None
    assert after.limits == KeyLimits(60, 1000, None, 5_000_000, "month")
    removed = updated.model_copy(
        update={
            "stream_version": 3,
            "data": KeyUpdatedData(
                before={
                    "token_budget": TokenBudget(tokens=5_000_000, period="month"),
                    "rate_limit_per_day": None,
                },
                after={"token_budget": None, "rate_limit_per_day": 7},
            ),
        }
    )
    removed_budget = fold(after, removed)
    assert removed_budget is not None
    assert removed_budget.limits == KeyLimits(60, 1000, 7, None, None)


def test_recent_ids_are_bounded_by_count_and_by_event_time() -> None:
    recent = RecentIds(horizon_minutes=15, max_ids=4)
    recent.add(100, ["a", "b"])
    recent.add(101, ["c", "d"])
    assert "a" in recent
    recent.add(102, ["e"])  # five ids: the oldest batch goes
    assert "a" not in recent and "c" in recent and len(recent) == 3
    recent.add(200, ["f"])  # past the horizon of what came before
    assert "c" not in recent and "e" not in recent and "f" in recent
    recent.reset(7, [(300, ["x"])])
    assert recent.next_offset == 7 and "x" in recent and "f" not in recent


def test_the_limit_counter_forgets_keys_judged_longer_ago_than_the_refresh() -> None:
    # Only the last refresh_seconds tell a key to wait: older entries would only hold memory.
    counter = LimitCounter(
        lambda: None, LimitDirectory(), "t", horizon_minutes=15, max_ids=1000, refresh_seconds=1.0
    )
    counter._judged = {"long ago": 10.0, "just now": 10.8}
    counter._forget_judged(11.5)
    assert counter._judged == {"just now": 10.8}


def _without_limits(key: KeyInfo, key_id: str) -> KeyInfo:
    return dataclasses.replace(
        key,
        key_id=key_id,
        rate_limit_per_minute=None,
        rate_limit_per_hour=None,
        rate_limit_per_day=None,
        token_budget=None,
        token_budget_period=None,
    )


def test_the_counters_directory_holds_only_keys_with_limits_and_shares_their_pairs() -> None:
    created = fold(None, example_events()[0])
    assert created is not None and created.limits
    directory = LimitDirectory()
    directory.commit(created)
    twin = dataclasses.replace(created, key_id=str(uuid.uuid4()))
    directory.commit(twin)
    held = directory.get(created.key_id)
    assert held == (created.account_id, created.limits)
    assert directory.get(twin.key_id) is held  # one pair for an account's keys alike
    without = _without_limits(created, str(uuid.uuid4()))
    directory.commit(without)
    assert directory.get(without.key_id) is None and len(directory) == 2
    directory.commit(_without_limits(twin, twin.key_id))  # its limits removed
    assert directory.get(twin.key_id) is None and len(directory) == 1
