"""Every key's limit state as the usage service last published it on `usage.limits`, and
what this process admitted since: the book verification consults in memory.

The usage service is the one count for every instance, but it learns of a request only
from its usage record, after the request was admitted. So between two states a verifier
also counts what it admits itself: a limit's remaining allowance here is
`limit - counted (in the last state) - admitted here and not yet counted`, refused at 0.
A new state takes over the admissions made before its `as_of` (the event time of the
newest record it counted); those made since stay counted here, as their records are still
on their way. The overshoot this leaves is bounded in docs/limits.md.
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
KEEP_SECONDS: Final = 300
"""An admission older than this is taken as counted by whatever state comes next."""
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
    """Per request limit, what this process admitted in its window and that state did not
    count yet."""
    by_second: dict[tuple[LimitName, float, int], int] = field(default_factory=dict)
    """The same admissions by (limit, window end, second admitted): a new state counted
    those before its `as_of`, not those after (their records were still on their way)."""


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
        fresh = self._entries[state.key_id] = _Entry(state.as_of, counted)
        if entry is not None:
            _carry_over(entry, fresh, int(state.as_of.timestamp()))
        self.states += 1
        return True

    def admit(self, key_id: uuid.UUID, limits: KeyLimits, now: float) -> Admission:
        """The verdict on one request at `now`; an admitted request is counted here."""
        return self._judge(key_id, limits, now, admit=True)

    def peek(self, key_id: uuid.UUID, limits: KeyLimits, now: float) -> Admission:
        """The verdict a request would get now, counting nothing (for the console)."""
        return self._judge(key_id, limits, now, admit=False)

    def _judge(self, key_id: uuid.UUID, limits: KeyLimits, now: float, admit: bool) -> Admission:
        # Inlined and on plain tuples: it runs on every verification of a limited key.
        if not limits.limits:
            return ADMITTED
        entry = self._entries.get(key_id)
        if entry is None:
            entry = _Entry(None, {})
            if admit:
                self._entries[key_id] = entry
        counted, admitted = entry.counted, entry.admitted
        windows: list[Remaining] = []
        before: list[int] = []
        refused_by: Limit | None = None
        refused_until = 0.0
        for limit in limits.limits:
            name, allowed, span, counts_requests = limit
            end = (now // span + 1) * span if span else limit.window_end(now)
            used = 0
            seen = counted.get(name) if counted else None
            if seen is not None and now < seen[0]:
                end, used = seen  # the last state's count, while its window lasts
            mine = admitted.get(name) if counts_requests else None
            mine_now = mine[1] if mine is not None and mine[0] == end else 0
            before.append(mine_now)  # what this process admitted in that window since
            remaining = allowed - used - mine_now
            # Of several exhausted limits, the one that ends last says when to come back.
            if remaining <= 0 and (refused_by is None or end > refused_until):
                refused_by, refused_until = limit, end
            # What is left after this request: a request limit counts it, tokens come later.
            if admit and counts_requests:
                remaining -= 1
            windows.append((name, allowed, remaining if remaining > 0 else 0, end))
        if refused_by is not None:
            code: Refusal = "rate_limited" if refused_by.counts_requests else "budget_exhausted"
            return Admission(code, refused_by.name, refused_until, windows)
        if admit:
            by_second, second = entry.by_second, int(now)
            for limit, window, count in zip(limits.limits, windows, before, strict=True):
                if limit.counts_requests:
                    admitted[limit.name] = (window[3], count + 1)
                    slot = (limit.name, window[3], second)
                    by_second[slot] = by_second.get(slot, 0) + 1
            if len(by_second) > 64:  # no state for a while: the totals stay, old seconds go
                entry.by_second = {k: v for k, v in by_second.items() if k[2] > now - KEEP_SECONDS}
        return Admission(None, None, 0.0, windows)


def _carry_over(old: _Entry, new: _Entry, since: int) -> None:
    """Admissions of `old` from second `since` on: not in the new state's counts yet."""
    for (name, end, second), count in old.by_second.items():
        if second >= since:
            new.by_second[(name, end, second)] = count
            mine = new.admitted.get(name)
            before = mine[1] if mine is not None and mine[0] == end else 0
            new.admitted[name] = (end, before + count)
