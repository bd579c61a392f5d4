"""The detectors' state of recently active keys, in memory, as a cache of key_activity.

PostgreSQL holds the truth (written with each batch); this cache saves reading it back.
It is dropped wholesale when it may be stale: when a partition's offsets jump (another
process consumed them: a rebalance) or a batch failed half-way. Keys idle for two
eviction rounds leave it (two generations: no per-key timestamp to keep).
"""

from __future__ import annotations

from collections.abc import Iterable

from services.usage.domain.activity import KeyActivity

Position = tuple[str, int]


class ActivityCache:
    def __init__(self) -> None:
        self._young: dict[str, KeyActivity] = {}
        self._old: dict[str, KeyActivity] = {}
        self._next_offset: dict[Position, int] = {}

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def get(self, key_id: str) -> KeyActivity | None:
        state = self._young.get(key_id)
        if state is None:
            state = self._old.pop(key_id, None)
            if state is not None:
                self._young[key_id] = state
        return state

    def put(self, state: KeyActivity) -> None:
        self._young[state.key_id] = state

    def drop(self, key_ids: Iterable[str]) -> None:
        for key_id in key_ids:
            self._young.pop(key_id, None)
            self._old.pop(key_id, None)

    def clear(self) -> None:
        self._young.clear()
        self._old.clear()
        self._next_offset.clear()

    def evict_idle(self) -> int:
        """Forget the keys not touched since the previous call; returns how many."""
        evicted = len(self._old)
        self._old, self._young = self._young, {}
        return evicted

    def follow(self, ranges: dict[Position, tuple[int, int]]) -> bool:
        """Check each partition continues where this process left it; else start over
        (and say so)."""
        if any(
            position in self._next_offset and self._next_offset[position] != first
            for position, (first, _) in ranges.items()
        ):
            self.clear()
            return True
        return False

    def consumed(self, ranges: dict[Position, tuple[int, int]]) -> None:
        for position, (_, last) in ranges.items():
            self._next_offset[position] = last + 1
