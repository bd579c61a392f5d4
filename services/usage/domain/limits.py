"""A key's limits against what the usage stream counted: the state ``usage.limits`` carries.

The limit counter folds each batch of records into counts per key and fixed UTC window
(minute, hour, day, month; contracts.window_bounds), in event time; the store adds them up;
`evaluate` turns the totals of the key's current windows into its `LimitState` body. A
refusal (401, 403, 429) is an attempt, not a request: it adds its tokens (none, as the
keys service writes them) but no request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Final, Literal, NamedTuple

import orjson

from contracts import LimitName, format_utc, window_bounds
from contracts.limits import BudgetPeriod
from services.usage.domain.requests import Request

Span = Literal["minute", "hour", "day", "month"]
SPANS: Final[tuple[Span, ...]] = ("minute", "hour", "day", "month")
REFUSED: Final = frozenset({401, 403, 429})
"""Statuses of a refused request: not counted against a rate limit."""
_SECONDS: Final = {"minute": 60, "hour": 3600, "day": 86400}


class Check(NamedTuple):
    """One limit of a key: its name, the span of its window, what it counts, how much."""

    name: LimitName
    span: Span
    tokens: bool
    limit: int


@dataclasses.dataclass(frozen=True, slots=True)
class KeyLimits:
    per_minute: int | None = None
    per_hour: int | None = None
    per_day: int | None = None
    budget: int | None = None
    budget_period: str | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.per_minute, self.per_hour, self.per_day)) or (
            self.budget is not None
        )

    def checks(self) -> Iterator[Check]:
        if self.per_minute is not None:
            yield Check("rate_limit_per_minute", "minute", False, self.per_minute)
        if self.per_hour is not None:
            yield Check("rate_limit_per_hour", "hour", False, self.per_hour)
        if self.per_day is not None:
            yield Check("rate_limit_per_day", "day", False, self.per_day)
        if self.budget is not None:
            span: Span = "month" if self.budget_period == "month" else "day"
            yield Check("token_budget", span, True, self.budget)


_MONTHS: dict[int, int] = {}


def window_start(span: Span, at: float) -> int:
    """Start (epoch seconds) of the fixed UTC window of `span` that holds `at`."""
    if span != "month":
        size = _SECONDS[span]
        return int(at // size) * size
    day = int(at // 86400) * 86400
    start = _MONTHS.get(day)
    if start is None:
        if len(_MONTHS) > 4096:
            _MONTHS.clear()
        moment = datetime.fromtimestamp(day, UTC)
        start = _MONTHS[day] = int(moment.replace(day=1).timestamp())
    return start


WindowKey = tuple[str, Span, int]
"""(key_id, span, window start)."""


class BatchCounts:
    """What one batch adds to each key's windows, and each key's newest counted record."""

    def __init__(self) -> None:
        self.windows: dict[WindowKey, list[int]] = {}
        """[requests, tokens] per window."""
        self.newest: dict[str, tuple[float, str]] = {}
        """key_id -> (event time of its newest counted record, account_id)."""

    def add(self, request: Request) -> bool:
        """Count the record; False when it changes nothing (a refusal without tokens)."""
        refused = request.status_code in REFUSED
        tokens = request.tokens_in + request.tokens_out
        if refused and not tokens:
            return False
        key_id, at, windows = request.key_id, request.at, self.windows
        request_count = 0 if refused else 1
        for span in SPANS:
            slot = (key_id, span, window_start(span, at))
            counts = windows.get(slot)
            if counts is None:
                windows[slot] = [request_count, tokens]
            else:
                counts[0] += request_count
                counts[1] += tokens
        newest = self.newest.get(key_id)
        if newest is None or at > newest[0]:
            self.newest[key_id] = (at, request.account_id)
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class Evaluated:
    """A key's limit state, with its LimitState JSON ready to store and publish."""

    key_id: str
    account_id: str
    state: str
    limit_name: str | None
    until: float | None
    as_of: float
    body: str


def current_windows(limits: KeyLimits, at: float) -> list[tuple[Span, int]]:
    """The (span, start) of each window `evaluate` reads for a key at `at`."""
    return [(check.span, window_start(check.span, at)) for check in limits.checks()]


_BOUNDED_BY: Final[dict[Span, LimitName]] = {
    "minute": "rate_limit_per_minute",
    "hour": "rate_limit_per_hour",
    "day": "rate_limit_per_day",
    "month": "token_budget",
}
_ENDS: dict[tuple[Span, int], tuple[float, str]] = {}


def window_end(span: Span, start: int) -> tuple[float, str]:
    """End of the window (epoch seconds, and as written on the wire); remembered, as every
    key of a batch shares a few windows."""
    found = _ENDS.get((span, start))
    if found is None:
        if len(_ENDS) > 4096:
            _ENDS.clear()
        period: BudgetPeriod = "month" if span == "month" else "day"
        _, end = window_bounds(_BOUNDED_BY[span], period, datetime.fromtimestamp(start, UTC))
        found = _ENDS[(span, start)] = (end.timestamp(), format_utc(end))
    return found


def evaluate(
    key_id: str,
    account_id: str,
    limits: KeyLimits,
    totals: Mapping[tuple[Span, int], tuple[int, int]],
    at: float,
) -> Evaluated:
    """The key's state at event time `at`: limited by the limit reached whose window ends
    last (so a key over its budget and its minute's rate is refused for the longer), or
    clear. `totals`: (requests, tokens) of each window, by (span, start); absent is zero."""
    windows: dict[str, dict[str, object]] = {}
    reached: tuple[float, int, Check, int, str] | None = None
    for order, check in enumerate(limits.checks()):
        start = window_start(check.span, at)
        end, reset_at = window_end(check.span, start)
        counts = totals.get((check.span, start), (0, 0))
        counted = counts[1] if check.tokens else counts[0]
        windows[check.name] = {"counted": counted, "limit": check.limit, "reset_at": reset_at}
        if counted >= check.limit and (reached is None or (end, order) > reached[:2]):
            reached = (end, order, check, counted, reset_at)
    body: dict[str, object] = {"key_id": key_id, "account_id": account_id}
    if reached is None:
        state, limit_name, until = "clear", None, None
        body.update(state=state, limit_name=None, until=None, counted=None, limit=None)
    else:
        until, _, check, counted, reset_at = reached
        state = "budget_exhausted" if check.tokens else "rate_limited"
        limit_name = check.name
        body.update(
            state=state, limit_name=limit_name, until=reset_at, counted=counted, limit=check.limit
        )
    body.update(as_of=format_utc(datetime.fromtimestamp(at, UTC)), windows=windows)
    return Evaluated(key_id, account_id, state, limit_name, until, at, orjson.dumps(body).decode())
