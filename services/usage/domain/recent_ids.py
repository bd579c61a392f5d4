"""Record ids counted lately, held compactly: what recognises a record sent twice.

`Fingerprints` is the memory of each consumer of `usage.records`: each id is held as a
60-bit fingerprint (its str hash, masked), in a hash table of its own that is one flat
array of 64-bit slots (open addressing, linear probing: no Python object per id), and
batch by batch (8 bytes an id) so the oldest batches can leave first. Measured
(bench/usage_footprint.py, 300,000 ids): about 28 bytes an id, against about 75 for the
fingerprints as int keys of a dict (and 260 for the id text in a set); the probing is
Python, not C: about 0.6 to 1 microsecond more CPU an id looked up and added, measured in
process.

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
from collections.abc import Iterable, Sequence

_MASK = (1 << 60) - 1
_EMPTY = 0
"""A slot never used (a fingerprint of 0 is held as 1)."""
_GONE = -1
"""A slot whose fingerprint left (a tombstone: a search goes on past it)."""
_MIN_SLOTS = 1024
_MAX_LOAD = 2 / 3
"""Slots used (held and gone) past this share of the table: it is rebuilt."""
_GROWTH = 2.5
"""A rebuilt table has this many slots an id held (a load of 0.4: some batches in and out
before the next rebuild)."""


def _slots_for(held: int) -> int:
    """Any size (a slot is the fingerprint modulo the size): no doubling to a power of two."""
    return max(_MIN_SLOTS, int(held * _GROWTH))


class Fingerprints:
    """One memory's record ids, as fingerprints in a flat hash table, and by batch
    (minute, prints: 8 bytes an id), oldest batch first."""

    __slots__ = ("_batches", "_count", "_limit", "_size", "_table", "_used")

    def __init__(self) -> None:
        self._batches: deque[tuple[int, array[int]]] = deque()
        self._count = 0
        """Fingerprints held."""
        self._new_table(_MIN_SLOTS)

    def _new_table(self, slots: int) -> None:
        self._table = array("q", bytes(8 * slots))
        self._size = slots
        self._used = 0
        """Slots not empty: held and gone."""
        self._limit = int(slots * _MAX_LOAD)

    def __len__(self) -> int:
        return self._count

    def __contains__(self, record_id: str) -> bool:
        fingerprint = hash(record_id) & _MASK or 1
        table, size = self._table, self._size
        slot = fingerprint % size
        held = table[slot]
        while held != fingerprint:
            if held == _EMPTY:
                return False
            slot = (slot + 1) % size
            held = table[slot]
        return True

    def seen_before(self, record_ids: Iterable[str]) -> set[str]:
        """Those of `record_ids` already held."""
        table, size = self._table, self._size
        seen: set[str] = set()
        for record_id in record_ids:
            fingerprint = hash(record_id) & _MASK or 1
            slot = fingerprint % size
            held = table[slot]
            while held != fingerprint:
                if held == _EMPTY:
                    break
                slot = (slot + 1) % size
                held = table[slot]
            else:
                seen.add(record_id)
        return seen

    def add(self, minute: int, record_ids: Sequence[str]) -> None:
        if self._used + len(record_ids) > self._limit:
            self._rebuild(len(record_ids))  # room for the whole batch first
        table, size = self._table, self._size
        prints = array("q")
        used = self._used
        for record_id in record_ids:
            fingerprint = hash(record_id) & _MASK or 1
            slot = fingerprint % size
            held = table[slot]
            free = -1
            while held != fingerprint:
                if held == _EMPTY:
                    if free < 0:
                        free = slot
                        used += 1
                    table[free] = fingerprint
                    prints.append(fingerprint)
                    break
                if held == _GONE and free < 0:
                    free = slot
                slot = (slot + 1) % size
                held = table[slot]
        self._used = used
        if prints:
            self._batches.append((minute, prints))
            self._count += len(prints)

    def _rebuild(self, room: int = 0) -> None:
        """A table of the held fingerprints alone (the gone slots dropped), sized for them
        and `room` more."""
        self._new_table(_slots_for(self._count + room))
        table, size = self._table, self._size
        for _, prints in self._batches:
            for fingerprint in prints:
                slot = fingerprint % size
                while table[slot] != _EMPTY:
                    slot = (slot + 1) % size
                table[slot] = fingerprint
        self._used = self._count

    @property
    def batches(self) -> int:
        return len(self._batches)

    def oldest_minute(self) -> int:
        """The minute of the oldest batch held (there must be one)."""
        return self._batches[0][0]

    def drop_oldest(self) -> None:
        _, prints = self._batches.popleft()
        self._count -= len(prints)
        table, size = self._table, self._size
        for fingerprint in prints:
            slot = fingerprint % size
            while table[slot] != fingerprint:
                slot = (slot + 1) % size
            table[slot] = _GONE
        if self._count * 4 * _GROWTH < len(table) and len(table) > _MIN_SLOTS:
            self._rebuild()  # most have left: a smaller table

    def clear(self) -> None:
        self._batches.clear()
        self._count = 0
        self._new_table(_MIN_SLOTS)


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
