"""The key read model in memory, loaded once at start and kept current from keys.events."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from contracts import Event
from servicekit.consumer import Received
from services.usage.adapters import directory_store
from services.usage.domain.keys import KeyInfo, fold
from services.usage.domain.limits import KeyLimits


class KeyDirectory:
    def __init__(self) -> None:
        self._keys: dict[str, KeyInfo] = {}
        self.loaded = False
        self._horizon = 0
        """Where `follow` reads the stored rows' changes from."""

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key_id: str) -> KeyInfo | None:
        return self._keys.get(key_id)

    async def ensure_loaded(self, conn: Any) -> None:
        """Read the stored model once, before the first batch of either topic uses it."""
        if not self.loaded:
            self._horizon = await directory_store.horizon(conn)
            self._keys = {key.key_id: key for key in await directory_store.load_all(conn)}
            self.loaded = True

    async def follow(self, conn: Any) -> int:
        """Take the rows other processes stored since the last call (the key events of the
        partitions this process does not read); returns how many were newer here."""
        if not self.loaded:
            return 0
        self._horizon, keys = await directory_store.changed_since(conn, self._horizon)
        return sum(self.commit(key) for key in keys)

    def commit(self, key: KeyInfo) -> bool:
        """Hold `key` unless a later version of it is held; True when it is taken."""
        current = self._keys.get(key.key_id)
        if current is None or current.version < key.version:
            self._keys[key.key_id] = key
            return True
        return False

    def changes(
        self, batch: Sequence[Received[Event]], pending: dict[str, KeyInfo]
    ) -> Iterator[tuple[Event, KeyInfo | None, KeyInfo]]:
        """Fold a batch of key events: each event that changes its key, with the key
        before and after it; `pending` collects each key's newest, to be saved in the
        caller's transaction and `commit`ted after it (a replayed event is skipped)."""
        return fold_batch(batch, pending, self._keys)

    async def save(self, conn: Any, pending: dict[str, KeyInfo]) -> None:
        await directory_store.save_many(conn, list(pending.values()))


def fold_batch(
    batch: Sequence[Received[Event]], pending: dict[str, KeyInfo], known: Mapping[str, KeyInfo]
) -> Iterator[tuple[Event, KeyInfo | None, KeyInfo]]:
    """Each event of `batch` that changes its key, with the key before (from `pending`,
    else `known`) and after it; `pending` collects each key's newest."""
    for item in batch:
        event = item.message
        key_id = str(event.key_id)
        before = pending.get(key_id) or known.get(key_id)
        after = fold(before, event)
        if after is not None:
            pending[key_id] = after
            yield event, before, after


def limits_changed(before: KeyInfo | None, after: KeyInfo) -> bool:
    return (before.limits if before else KeyLimits()) != after.limits
