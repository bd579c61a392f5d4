"""The record ids a partition counted lately: a re-sent record is counted once.

Bounded: ids are kept per batch, and a batch's ids are forgotten once its newest record is
older (in event time) than the horizon, or once the partition holds more than `max_ids`.
A duplicate of a record older than that is counted again; gateways resend within seconds.
"""

from __future__ import annotations

from collections import deque


class RecentIds:
    def __init__(self, horizon_minutes: int, max_ids: int) -> None:
        self.horizon_minutes = horizon_minutes
        self.max_ids = max_ids
        self.next_offset: int | None = None
        """The offset this memory is current up to (None: never loaded)."""
        self._ids: set[str] = set()
        self._batches: deque[tuple[int, list[str]]] = deque()
        self._newest = 0

    def __contains__(self, record_id: str) -> bool:
        return record_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def reset(self, next_offset: int, batches: list[tuple[int, list[str]]]) -> None:
        """Start again from stored batches (minute, ids), oldest first."""
        self._ids.clear()
        self._batches.clear()
        self._newest = 0
        for minute, ids in batches:
            self.add(minute, ids)
        self.next_offset = next_offset

    def add(self, minute: int, ids: list[str]) -> None:
        if ids:
            self._batches.append((minute, ids))
            self._ids.update(ids)
        self._newest = newest = max(self._newest, minute)
        while self._batches and (
            len(self._ids) > self.max_ids or self._batches[0][0] < newest - self.horizon_minutes
        ):
            _, old = self._batches.popleft()
            self._ids.difference_update(old)
