"""The record ids counted lately, in memory: what catches a record sent twice (a gateway's
retry, a producer's retry after a broker restart) at another offset.

Bounded by count (`USAGE_DEDUP_MEMORY_IDS`, about 120 bytes an id) and by the dedup
horizon (event time); the oldest batches leave first. Backed by `seen_batches`, the
same ids written with each batch: rebuilt from it after a start or a rebalance, so a
record re-sent across a crash or to another instance is still caught within the horizon.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from services.usage.app.metrics import DEDUP_IDS_HELD


class RecentIds:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._ids: set[str] = set()
        self._batches: deque[tuple[int, Sequence[str]]] = deque()
        """(minute, ids) in the order they were added: the oldest leave first."""
        self.loaded = False

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, record_id: str) -> bool:
        return record_id in self._ids

    def seen_before(self, record_ids: Iterable[str]) -> set[str]:
        """Those of `record_ids` already held."""
        return self._ids.intersection(record_ids)

    def add(self, minute: int, record_ids: Sequence[str]) -> None:
        self._ids.update(record_ids)
        self._batches.append((minute, record_ids))
        while len(self._ids) > self.limit and len(self._batches) > 1:
            self._ids.difference_update(self._batches.popleft()[1])
        DEDUP_IDS_HELD.set(len(self._ids))

    def forget_before(self, minute: int) -> None:
        while self._batches and self._batches[0][0] < minute:
            self._ids.difference_update(self._batches.popleft()[1])
        DEDUP_IDS_HELD.set(len(self._ids))

    def clear(self) -> None:
        self._ids.clear()
        self._batches.clear()
        self.loaded = False
