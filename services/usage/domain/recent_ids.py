"""Record ids counted lately, held compactly: what recognises a record sent twice.

`Fingerprints` is the memory both consumers of `usage.records` share the shape of: each
id is held as a 60-bit fingerprint (its str hash, masked: a 32-byte int instead of an
80-byte str), batch by batch so the oldest batches can leave first. Measured
(bench/usage_footprint.py): about 85 bytes an id, against about 130 for the id text in a
set. Two ids sharing a fingerprint read as one: with a million ids held, the chance that a
new record is taken for a duplicate is about 1e-12 (2^-60 per id held); the stored ids
(seen_batches, limit_seen) stay exact text and are fingerprinted again after a restart
(the hash is per process).

`RecentIds` is the limit counter's, per partition: a batch's ids are forgotten once its
newest record is older (in event time) than the horizon, or once the partition holds more
than `max_ids`. A duplicate of a record older than that is counted again; gateways resend
within seconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

_MASK = (1 << 60) - 1
"""Below 2**60 an int is two 30-bit digits: 32 bytes (a full 64-bit hash takes 48)."""


class Fingerprints:
    """Record ids as fingerprints, by batch (minute, prints), oldest batch first."""

    __slots__ = ("_batches", "_held")

    def __init__(self) -> None:
        self._held: set[int] = set()
        self._batches: deque[tuple[int, list[int]]] = deque()

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, record_id: str) -> bool:
        return hash(record_id) & _MASK in self._held

    def seen_before(self, record_ids: Iterable[str]) -> set[str]:
        """Those of `record_ids` already held."""
        held = self._held
        return {i for i in record_ids if hash(i) & _MASK in held}

    def add(self, minute: int, record_ids: Iterable[str]) -> None:
        prints = [hash(i) & _MASK for i in record_ids]
        if prints:
            self._held.update(prints)
            self._batches.append((minute, prints))

    @property
    def batches(self) -> int:
        return len(self._batches)

    def oldest_minute(self) -> int:
        """The minute of the oldest batch held (there must be one)."""
        return self._batches[0][0]

    def drop_oldest(self) -> None:
        self._held.difference_update(self._batches.popleft()[1])

    def clear(self) -> None:
        self._held.clear()
        self._batches.clear()


class RecentIds:
    def __init__(self, horizon_minutes: int, max_ids: int) -> None:
        self.horizon_minutes = horizon_minutes
        self.max_ids = max_ids
        self.next_offset: int | None = None
        """The offset this memory is current up to (None: never loaded)."""
        self._ids = Fingerprints()
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
