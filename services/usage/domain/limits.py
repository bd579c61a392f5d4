"""A key's limits against what the usage stream counted: the state ``usage.limits`` carries.

The limit counter folds each batch of records into each key's newest window of every span
(minute, hour, day, month; fixed, UTC: contracts.window_bounds), in event time; the store
merges them into the key's stored windows (one row per key); `evaluate` turns the key's
current windows into its `LimitState` body. A
refusal (401, 403, 429) is an attempt, not a request: it adds its tokens (none, as the
keys service writes them) but no request.
"""

from __future__ import annotations

import dataclasses
import functools
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

    def checks(self) -> tuple[Check, ...]:
        """Each limit of the key (remembered: a few distinct sets of limits are shared by
        many keys, and every key of a batch is judged)."""
        return _checks(self)

    def _each(self) -> Iterator[Check]:
        if self.per_minute is not None:
            yield Check("rate_limit_per_minute", "minute", False, self.per_minute)
        if self.per_hour is not None:
            yield Check("rate_limit_per_hour", "hour", False, self.per_hour)
        if self.per_day is not None:
            yield Check("rate_limit_per_day", "day", False, self.per_day)
        if self.budget is not None:
            span: Span = "month" if self.budget_period == "month" else "day"
            yield Check("token_budget", span, True, self.budget)


@functools.lru_cache(maxsize=4096)
def _checks(limits: KeyLimits) -> tuple[Check, ...]:
    return tuple(limits._each())


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


Windows = list[int]
"""A key's newest window of each span and what it counted: [minute start, requests,
hour start, requests, day start, requests, tokens, month start, tokens] (starts in epoch
seconds). Only the newest window of a span matters to a key's state: a record of an older
one (late, or of a window already over) is not counted."""


def new_windows(at: float, requests: int, tokens: int) -> Windows:
    minute, hour = window_start("minute", at), window_start("hour", at)
    day, month = window_start("day", at), window_start("month", at)
    return [minute, requests, hour, requests, day, requests, tokens, month, tokens]


def merge(into: Windows, at: float, requests: int, tokens: int) -> None:
    """Count a record into the windows: added to a span's window when it is that window,
    starting the span's next window when newer, left out when older."""
    for index, span, counts in _LAYOUT:
        start = window_start(span, at)
        if start > into[index]:
            into[index] = start
            for offset, tokens_too in counts:
                into[index + offset] = tokens if tokens_too else requests
        elif start == into[index]:
            for offset, tokens_too in counts:
                into[index + offset] += tokens if tokens_too else requests


_LAYOUT: Final[tuple[tuple[int, Span, tuple[tuple[int, bool], ...]], ...]] = (
    (0, "minute", ((1, False),)),
    (2, "hour", ((1, False),)),
    (4, "day", ((1, False), (2, True))),
    (7, "month", ((1, True),)),
)


def totals_of(windows: Windows) -> dict[tuple[Span, int], tuple[int, int]]:
    """The windows as `evaluate` reads them: (requests, tokens) by (span, start)."""
    minute, minute_requests, hour, hour_requests, day, day_requests, day_tokens, month, \
        month_tokens = windows  # fmt: skip
    return {
        ("minute", minute): (minute_requests, 0),
        ("hour", hour): (hour_requests, 0),
        ("day", day): (day_requests, day_tokens),
        ("month", month): (0, month_tokens),
    }


class BatchCounts:
    """What one batch adds to each key's windows, and each key's newest counted record."""

    def __init__(self) -> None:
        self.windows: dict[str, Windows] = {}
        self.newest: dict[str, tuple[float, str]] = {}
        """key_id -> (event time of its newest counted record, account_id)."""

    def add(self, request: Request) -> bool:
        """Count the record; False when it changes nothing (a refusal without tokens)."""
        refused = request.status_code in REFUSED
        tokens = request.tokens_in + request.tokens_out
        if refused and not tokens:
            return False
        key_id, at = request.key_id, request.at
        requests = 0 if refused else 1
        windows = self.windows.get(key_id)
        if windows is None:
            self.windows[key_id] = new_windows(at, requests, tokens)
        elif int(at // 60) * 60 == windows[0]:  # the same minute: the same everything
            windows[1] += requests
            windows[3] += requests
            windows[5] += requests
            windows[6] += tokens
            windows[8] += tokens
        else:
            merge(windows, at, requests, tokens)
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


def reached(
    limits: KeyLimits, totals: Mapping[tuple[Span, int], tuple[int, int]], at: float
) -> bool:
    """Whether a limit of the key is reached in its window at `at` (what `evaluate` would
    say is not clear), at a fraction of its cost."""
    for check in limits.checks():
        counts = totals.get((check.span, window_start(check.span, at)))
        if counts is not None and counts[1 if check.tokens else 0] >= check.limit:
            return True
    return False


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
