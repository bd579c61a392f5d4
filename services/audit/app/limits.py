"""Recording the changes of keys' limit states, one audit record per change."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from contracts import LimitState
from services.audit.adapters.limit_history import newest_limit_records
from services.audit.app.recording import Recorder
from services.audit.domain.limits import Limited, changes, from_details

MAX_REMEMBERED = 200_000
"""Keys whose state is kept in memory; past that, forgotten and read back from the log."""


class LimitChanges:
    def __init__(self, recorder: Recorder, pool: Callable[[], Any]) -> None:
        self.recorder = recorder
        self.pool = pool
        self._last: dict[str, Limited | None] = {}

    async def record(self, states: Sequence[LimitState]) -> int:
        """Record the changes among the states; returns how many were new."""
        last = {k: self._last[k] for s in states if (k := str(s.key_id)) in self._last}
        unknown = {str(s.key_id) for s in states if s.state == "clear"} - set(last)
        if unknown:  # a clear ends a limited state only this log may remember
            stored = await newest_limit_records(
                self.pool(), {s.account_id for s in states}, unknown
            )
            for key_id in unknown:
                record = stored.get(key_id)
                last[key_id] = from_details(*record) if record is not None else None
        recorded = await self.recorder.record(changes(states, last))
        if len(self._last) + len(last) > MAX_REMEMBERED:
            self._last.clear()
        self._last.update(last)  # once recorded: a failed batch is judged again as it was
        return recorded
