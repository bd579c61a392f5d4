"""The record ids counted lately, in memory: what catches a record sent twice (a gateway's
retry, a producer's retry after a broker restart) at another offset.

Bounded by count (`USAGE_DEDUP_MEMORY_IDS`) and by the dedup horizon (event time); the
oldest batches leave first. Held as fingerprints shared with the limit counter's memory
(domain/recent_ids.py). Backed by `seen_batches`, the same ids written with each batch:
rebuilt from it after a start or a rebalance, so a record re-sent across a crash or to
another instance is still caught within the horizon.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from services.usage.app.metrics import DEDUP_IDS_HELD
from services.usage.domain.recent_ids import Fingerprints, SharedIds

INGEST_BIT = 1
"""This memory's bit in the process's `SharedIds` (the limit counter's partitions have
the next ones)."""


class RecentIds:
    def __init__(self, limit: int, shared: SharedIds | None = None) -> None:
        self.limit = limit
        self._ids = Fingerprints(shared, INGEST_BIT)
        self.loaded = False

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, record_id: str) -> bool:
        return record_id in self._ids

    def seen_before(self, record_ids: Iterable[str]) -> set[str]:
        """Those of `record_ids` already held."""
        return self._ids.seen_before(record_ids)

    def add(self, minute: int, record_ids: Sequence[str]) -> None:
        held = self._ids
        held.add(minute, record_ids)
        while len(held) > self.limit and held.batches > 1:
            held.drop_oldest()
        DEDUP_IDS_HELD.set(len(held))

    def forget_before(self, minute: int) -> None:
        held = self._ids
        while held.batches and held.oldest_minute() < minute:
            held.drop_oldest()
        DEDUP_IDS_HELD.set(len(held))

    def clear(self) -> None:
        self._ids.clear()
        self.loaded = False
