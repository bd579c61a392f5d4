"""The limit counter's key directory: of each key with limits, only its account and its
limits, in memory; the whole row stays in `limit_directory`.

The counter judges a record's key by its limits and publishes its account; nothing else
of a key is read per record. So a key is one dict entry (its id and a shared pair), not
a `KeyInfo` (~280 bytes a key more, measured by bench/usage_footprint.py), and a key
without limits (most keys) is not held at all: judged as one without limits. A key event
folds the key's stored row, read in the event batch's transaction (`changes`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from contracts import Event
from servicekit.consumer import Received
from services.usage.adapters import directory_store
from services.usage.app.directory import fold_batch
from services.usage.domain.keys import KeyInfo
from services.usage.domain.limits import KeyLimits

Limited = tuple[str, KeyLimits]
"""A key's account_id and its limits (never empty)."""


class LimitDirectory:
    def __init__(self) -> None:
        self._keys: dict[str, Limited] = {}
        self._shared: dict[Limited, Limited] = {}
        """One pair for the keys of an account that have the same limits (most)."""
        self.loaded = False
        self._horizon = 0
        """Where `follow` reads the stored rows' changes from."""

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key_id: str) -> Limited | None:
        """The key's account and limits; None when it has no limits (or is unknown)."""
        return self._keys.get(key_id)

    async def ensure_loaded(self, conn: Any) -> None:
        """Read the stored limits once, before the first batch uses them (`conn` in a
        transaction)."""
        if self.loaded:
            return
        self._horizon = await directory_store.horizon(conn)
        self._keys = {}
        async for rows in directory_store.iter_limits(conn):
            for key_id, account_id, minute, hour, day, budget, period in rows:
                self._put(key_id, account_id, KeyLimits(minute, hour, day, budget, period))
        self.loaded = True

    async def follow(self, conn: Any) -> list[KeyInfo]:
        """Take the rows other processes stored since the last call (the key events of the
        partitions this process does not read); returns the keys whose limits changed."""
        if not self.loaded:
            return []
        self._horizon, keys = await directory_store.changed_since(
            conn, self._horizon, directory_store.LIMIT_DIRECTORY
        )
        changed = []
        for key in keys:
            held = self._keys.get(key.key_id)
            if (held[1] if held else None) != (key.limits or None):
                self._put(key.key_id, key.account_id, key.limits)
                changed.append(key)
        return changed

    def _put(self, key_id: str, account_id: str, limits: KeyLimits) -> None:
        if not limits:
            self._keys.pop(key_id, None)
            return
        if len(self._shared) > 2 * len(self._keys) + 1024:
            self._shared.clear()  # pairs no key holds any more: only sharing is lost
        pair = (account_id, limits)
        self._keys[key_id] = self._shared.setdefault(pair, pair)

    async def changes(
        self, conn: Any, batch: Sequence[Received[Event]], pending: dict[str, KeyInfo]
    ) -> Iterator[tuple[Event, KeyInfo | None, KeyInfo]]:
        """Fold a batch of key events onto the keys' stored rows (KeyDirectory.changes);
        the caller holds the counter's lock, so no other fold of this process interleaves."""
        key_ids = list({str(item.message.key_id) for item in batch} - pending.keys())
        stored = await directory_store.load_keys(conn, key_ids, directory_store.LIMIT_DIRECTORY)
        return fold_batch(batch, pending, {key.key_id: key for key in stored})

    async def save(self, conn: Any, pending: dict[str, KeyInfo]) -> None:
        await directory_store.save_many(
            conn, list(pending.values()), directory_store.LIMIT_DIRECTORY
        )

    def commit(self, key: KeyInfo) -> None:
        """The key's newest row, once stored (`changes` folded it onto the stored one)."""
        self._put(key.key_id, key.account_id, key.limits)
