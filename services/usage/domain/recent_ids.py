"""Record ids counted lately, held compactly: what recognises a record sent twice.

`Fingerprints` is the memory of each consumer of `usage.records`: each id is held as a
60-bit fingerprint (its str hash, masked: a 32-byte int instead of an 80-byte str) in one
dict for the process (`SharedIds`: fingerprint -> which memories hold it), and batch by
batch (8 bytes an id) so the oldest batches can leave first. Measured
(bench/usage_footprint.py): about 100 bytes an id held by both the ingest and the limit
counter, against about 260 for the id text in a set in each.

Two ids sharing a fingerprint read as one: with a million ids held, the chance that a new
record is taken for a duplicate is about 1e-12 (2^-60 per id held). The stored ids
(seen_batches, limit_seen) stay exact text and are fingerprinted again after a restart
(the hash is per process).

`RecentIds` is the limit counter's, per partition: a batch's ids are forgotten once its
newest record is older (in event time) than the horizon, or once the partition holds more
than `max_ids`. A duplicate of a record older than that is counted again; gateways resend
within seconds.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Iterable

_MASK = (1 << 60) - 1
"""Below 2**60 an int is two 30-bit digits: 32 bytes (a full 64-bit hash takes 48)."""


class SharedIds:
    """The fingerprints held by any memory of the process, each with the bits of the
    memories holding it: the ingest and the limit counter read the same records, so an id
    is one dict entry for both (~80 bytes), not one set entry in each."""

    __slots__ = ("holders",)

    def __init__(self) -> None:
        self.holders: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.holders)


class Fingerprints:
    """One memory's record ids, as fingerprints in a `SharedIds` under its own `bit`, by
    batch (minute, prints: 8 bytes an id), oldest batch first."""

    __slots__ = ("_batches", "_bit", "_count", "_holders", "_keep")

    def __init__(self, shared: SharedIds | None = None, bit: int = 1) -> None:
        self._holders = (shared if shared is not None else SharedIds()).holders
        self._bit = bit
        self._keep = ~bit
        self._batches: deque[tuple[int, array[int]]] = deque()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, record_id: str) -> bool:
        return bool(self._holders.get(hash(record_id) & _MASK, 0) & self._bit)

    def seen_before(self, record_ids: Iterable[str]) -> set[str]:
        """Those of `record_ids` already held."""
        holders, bit = self._holders, self._bit
        return {i for i in record_ids if holders.get(hash(i) & _MASK, 0) & bit}

    def add(self, minute: int, record_ids: Iterable[str]) -> None:
        holders, bit = self._holders, self._bit
        prints = array("q")
        for record_id in record_ids:
            fingerprint = hash(record_id) & _MASK
            held = holders.get(fingerprint, 0)
            if not held & bit:
                holders[fingerprint] = held | bit
                prints.append(fingerprint)
        if prints:
            self._batches.append((minute, prints))
            self._count += len(prints)

    @property
    def batches(self) -> int:
        return len(self._batches)

    def oldest_minute(self) -> int:
        """The minute of the oldest batch held (there must be one)."""
        return self._batches[0][0]

    def drop_oldest(self) -> None:
        _, prints = self._batches.popleft()
        self._count -= len(prints)
        holders, keep = self._holders, self._keep
        for fingerprint in prints:
            left = holders.pop(fingerprint) & keep
            if left:
                holders[fingerprint] = left

    def clear(self) -> None:
        while self._batches:
            self.drop_oldest()


class RecentIds:
    def __init__(
        self, horizon_minutes: int, max_ids: int, shared: SharedIds | None = None, bit: int = 1
    ) -> None:
        self.horizon_minutes = horizon_minutes
        self.max_ids = max_ids
        self.next_offset: int | None = None
        """The offset this memory is current up to (None: never loaded)."""
        self._ids = Fingerprints(shared, bit)
        self._newest = 0

    def __contains__(self, record_id: str) -> bool:
        return record_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def reset(self, next_offset: int, batches: list[tuple[int, list[str]]]) -> None:
        """Start again from stored batches (minute, ids), oldest first."""
        self._ids.clear()
        self._newest = 0
        for minute, ids in batches:
            self.add(minute, ids)
        self.next_offset = next_offset

    def add(self, minute: int, ids: list[str]) -> None:
        held = self._ids
        held.add(minute, ids)
        self._newest = newest = max(self._newest, minute)
        while held.batches and (
            len(held) > self.max_ids or held.oldest_minute() < newest - self.horizon_minutes
        ):
            held.drop_oldest()
