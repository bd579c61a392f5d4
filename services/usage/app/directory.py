"""The key read model in memory, loaded once at start and kept current from keys.events."""

from __future__ import annotations

from typing import Any

from services.usage.adapters import directory_store
from services.usage.domain.keys import KeyInfo


class KeyDirectory:
    def __init__(self) -> None:
        self._keys: dict[str, KeyInfo] = {}
        self.loaded = False

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key_id: str) -> KeyInfo | None:
        return self._keys.get(key_id)

    async def ensure_loaded(self, conn: Any) -> None:
        """Read the stored model once, before the first batch of either topic uses it."""
        if not self.loaded:
            self._keys = {key.key_id: key for key in await directory_store.load_all(conn)}
            self.loaded = True

    def commit(self, key: KeyInfo) -> None:
        current = self._keys.get(key.key_id)
        if current is None or current.version < key.version:
            self._keys[key.key_id] = key
