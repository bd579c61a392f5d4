"""Every key's limit state as the usage service last published it on `usage.limits`, and
what this process admitted since: the book verification consults in memory.

The usage service is the one count for every instance, but it learns of a request only
from its usage record, after the request was admitted. So between two states a verifier
also counts what it admits itself: a limit's remaining allowance here is
`limit - counted (in the last state) - admitted here since`, refused at 0. A new state
replaces the local count (its count now holds those requests, or soon will). The overshoot
this leaves is bounded in docs/limits.md.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from contracts import LimitState
from contracts.limits import LimitName
from services.keys.app.limits import Admission, KeyLimits, Limit, Refusal, Remaining

EXHAUSTED: Final = 2**62
"""The count of a limited state that did not say what it counted: nothing remains."""
ADMITTED: Final = Admission(None, None, 0.0, ())
"""The verdict for a key without limits."""

Window = tuple[float, int]
"""(end of the window, seconds since 1970; count in it)."""


@dataclass(slots=True)
class _Entry:
    as_of: datetime | None
    counted: dict[LimitName, Window]
    """Per limit, what the last state counted in its window."""
    admitted: dict[LimitName, Window] = field(default_factory=dict)
    """Per request limit, what this process admitted in its window since that state."""


class LimitBook:
    def __init__(self) -> None:
        self._entries: dict[uuid.UUID, _Entry] = {}
        self.states = 0
        """States taken (older ones than a key's current state are not)."""

    def __len__(self) -> int:
        return len(self._entries)

    def observe(self, state: LimitState) -> bool:
        """Take `state` unless the book holds a newer one for its key (by `as_of`)."""
        entry = self._entries.get(state.key_id)
        if entry is not None and entry.as_of is not None and state.as_of < entry.as_of:
            return False
        counted = {name: (w.reset_at.timestamp(), w.counted) for name, w in state.windows.items()}
        if state.state != "clear" and state.limit_name is not None and state.until is not None:
            end = state.until.timestamp()
            mark = next((n for n in (state.counted, state.limit) if n is not None), EXHAUSTED)
            seen = counted.get(state.limit_name)
            if seen is None or seen[0] != end or seen[1] < mark:
                counted[state.limit_name] = (end, mark)
        self._entries[state.key_id] = _Entry(state.as_of, counted)
        self.states += 1
        return True

    def admit(self, key_id: uuid.UUID, limits: KeyLimits, now: float) -> Admission:
        """The verdict on one request at `now`; an admitted request is counted here."""
        return self._judge(key_id, limits, now, admit=True)

    def peek(self, key_id: uuid.UUID, limits: KeyLimits, now: float) -> Admission:
        """The verdict a request would get now, counting nothing (for the console)."""
        return self._judge(key_id, limits, now, admit=False)

    def _judge(self, key_id: uuid.UUID, limits: KeyLimits, now: float, admit: bool) -> Admission:
        if not limits.limits:
            return ADMITTED
        entry = self._entries.get(key_id)
        windows: list[Remaining] = []
        refused_by: Limit | None = None
        refused_until = 0.0
        for limit in limits.limits:
            end, used = _used(entry, limit, now)
            remaining = limit.allowed - used
            # Of several exhausted limits, the one that ends last says when to come back.
            if remaining <= 0 and (refused_by is None or end > refused_until):
                refused_by, refused_until = limit, end
            # What is left after this request: a request limit counts it, tokens come later.
            left = remaining - 1 if admit and limit.counts_requests else remaining
            windows.append(Remaining(limit.name, limit.allowed, max(left, 0), end))
        if refused_by is not None:
            code: Refusal = "rate_limited" if refused_by.counts_requests else "budget_exhausted"
            return Admission(code, refused_by.name, refused_until, tuple(windows))
        if admit:
            if entry is None:
                entry = self._entries[key_id] = _Entry(None, {})
            admitted = entry.admitted
            for limit, window in zip(limits.limits, windows, strict=True):
                if limit.counts_requests:
                    mine = admitted.get(limit.name)
                    before = mine[1] if mine is not None and mine[0] == window.reset_at else 0
                    admitted[limit.name] = (window.reset_at, before + 1)
        return Admission(None, None, 0.0, tuple(windows))


def _used(entry: _Entry | None, limit: Limit, now: float) -> Window:
    """(end of the limit's current window, what is used of it): the last state's count
    while its window lasts (a state whose window ended says nothing), plus this process's
    admissions since."""
    end, used = limit.window_end(now), 0
    if entry is None:
        return end, used
    seen = entry.counted.get(limit.name)
    if seen is not None and now < seen[0]:
        end, used = seen
    mine = entry.admitted.get(limit.name)
    if mine is not None and mine[0] == end:
        used += mine[1]
    return end, used
