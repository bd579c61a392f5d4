"""The names of the keys whose events this process reads, remembered from batch to batch.

A record of a key's own event carries the key's name (see domain/appending.py), and only the
key's own events change it (created, renamed): they come in order on the key's partition of
keys.events. So while this process reads a partition without a gap (each batch of it starts
at the offset right after the last batch of it that was stored), the names that partition's
events left are still the names in the database, and the next batch need not read them
again (reading them cost more than a third of the database's work per event). A gap (the
partition was read by another process meanwhile, a message of it was dead-lettered, a
batch is retried in parts) forgets what that partition taught. Nothing is remembered
before its batch is stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

Read = tuple[int, int, uuid.UUID | None]
"""Where a message of the batch was read (partition, offset) and the key it is about."""
LIMIT: Final = 200_000
"""Names kept at most (about 100 bytes each); past it, everything is forgotten at once."""


@dataclass
class _Partition:
    next_offset: int
    """The offset after the last message of this partition that was stored."""
    names: dict[uuid.UUID, str] = field(default_factory=dict)


class KeyNames:
    def __init__(self, limit: int = LIMIT) -> None:
        self._partitions: dict[int, _Partition] = {}
        self._limit = limit
        self._count = 0

    def known(self, batch: Sequence[Read]) -> dict[uuid.UUID, str]:
        """The names of the batch's keys that are still those in the database; the others
        must be read there."""
        starts: dict[int, int] = {}
        for partition, offset, _ in batch:
            starts.setdefault(partition, offset)
        for partition, start in starts.items():
            kept = self._partitions.get(partition)
            if kept is not None and kept.next_offset != start:
                self._forget(partition)
        known: dict[uuid.UUID, str] = {}
        for partition, _, key_id in batch:
            kept = self._partitions.get(partition)
            if kept is not None and key_id is not None:
                name = kept.names.get(key_id)
                if name is not None:
                    known[key_id] = name
        return known

    def stored(self, batch: Sequence[Read], names: Mapping[uuid.UUID, str] | None) -> None:
        """The batch is stored; `names` are its keys' names now (None: not known, so what
        its partitions taught is forgotten)."""
        ends: dict[int, int] = {}
        for partition, offset, _ in batch:
            ends[partition] = max(ends.get(partition, 0), offset + 1)
        for partition, end in ends.items():
            if names is None:
                self._forget(partition)
                continue
            kept = self._partitions.setdefault(partition, _Partition(end))
            kept.next_offset = end
        if names is None:
            return
        for partition, _, key_id in batch:
            name = names.get(key_id) if key_id is not None else None
            if key_id is not None and name is not None:
                kept_names = self._partitions[partition].names
                self._count += key_id not in kept_names
                kept_names[key_id] = name
        if self._count > self._limit:
            self._partitions.clear()
            self._count = 0

    def _forget(self, partition: int) -> None:
        kept = self._partitions.pop(partition, None)
        if kept is not None:
            self._count -= len(kept.names)
