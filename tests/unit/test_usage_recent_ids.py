"""The in-memory dedup of record ids is bounded by count and by the horizon, the oldest
batches leaving first."""

from __future__ import annotations

from services.usage.app.recent_ids import RecentIds
from services.usage.domain.recent_ids import RecentIds as PartitionIds
from services.usage.domain.recent_ids import SharedIds


def _ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{n}" for n in range(count)]


def test_ids_held_are_found_and_others_are_not() -> None:
    recent = RecentIds(limit=1000)
    recent.add(10, _ids("a", 3))
    assert recent.seen_before(["a-1", "b-1"]) == {"a-1"}
    assert "a-2" in recent and "b-2" not in recent


def test_over_the_limit_the_oldest_batches_leave_first() -> None:
    recent = RecentIds(limit=10)
    recent.add(1, _ids("old", 6))
    recent.add(2, _ids("mid", 4))
    recent.add(3, _ids("new", 4))  # 14 > 10: the oldest batch goes
    assert len(recent) == 8
    assert recent.seen_before(["old-0", "mid-0", "new-0"]) == {"mid-0", "new-0"}


def test_a_batch_larger_than_the_limit_is_still_held_whole() -> None:
    recent = RecentIds(limit=10)
    recent.add(1, _ids("a", 3))
    recent.add(2, _ids("big", 20))
    assert len(recent) == 20 and "a-0" not in recent


def test_ids_older_than_the_horizon_are_forgotten() -> None:
    recent = RecentIds(limit=1000)
    recent.add(5, _ids("a", 2))
    recent.add(9, _ids("b", 2))
    recent.forget_before(9)
    assert recent.seen_before(["a-0", "b-0"]) == {"b-0"}
    recent.clear()
    assert len(recent) == 0 and not recent.loaded


def test_memories_sharing_the_fingerprints_each_hold_only_their_own_ids() -> None:
    shared = SharedIds()
    ingest = RecentIds(limit=1000, shared=shared)
    partition = PartitionIds(horizon_minutes=15, max_ids=1000, shared=shared, bit=2)
    ingest.add(1, _ids("a", 3))
    assert "a-0" in ingest and "a-0" not in partition  # counted by one, not by the other
    partition.add(1, _ids("a", 2))
    assert len(shared) == 3 and "a-1" in partition
    ingest.clear()  # the ingest forgets: the limit counter still holds its two
    assert "a-1" not in ingest and "a-1" in partition and "a-2" not in partition
    assert len(shared) == 2
    partition.reset(7, [])
    assert len(shared) == 0 and len(partition) == 0


def test_an_id_repeated_within_a_batch_is_held_once() -> None:
    recent = RecentIds(limit=1000)
    recent.add(1, ["x", "x", "y"])
    assert len(recent) == 2
    recent.forget_before(2)
    assert len(recent) == 0 and "x" not in recent
