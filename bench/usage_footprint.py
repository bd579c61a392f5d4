"""What the usage process's memory is made of at N active keys, structure by structure.

`python -m bench.usage_footprint --keys 100000`: builds, in this process, what the
usage_memory benchmark leaves in the service (the key directory of N keys with an hourly
limit, each key's detector state after three records, the ingest's and the limit
counter's recent record ids, the limit counter's per-key memory) and prints the bytes
each one holds (tracemalloc, allocations made while building it) per key. No broker, no
database: the same classes the service uses, fed as its batches feed them.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import random
import sys
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

from services.usage.adapters.directory_store import _info
from services.usage.app.activity_cache import ActivityCache
from services.usage.app.limit_counter import LimitCounter
from services.usage.app.limit_directory import LimitDirectory
from services.usage.app.recent_ids import RecentIds
from services.usage.domain.activity import KeyActivity
from services.usage.domain.detectors import DetectorConfig
from services.usage.domain.keys import KeyInfo
from services.usage.domain.limits import BatchCounts
from services.usage.domain.recent_ids import RecentIds as PartitionIds
from services.usage.domain.recent_ids import SharedIds
from services.usage.domain.requests import Request

PER_KEY = 3
BATCH = 5000
PARTITIONS = 3


def _copy(text: str) -> str:
    """A string of its own, as each consumer decodes the record itself."""
    return text.encode().decode()


def measure(label: str, build: Callable[[], Any], keys: int, keep: list[Any]) -> int:
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    keep.append(build())
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    print(f"{label:<44} {used / 2**20:9.1f} MB {used / keys:8.0f} B/key", flush=True)
    return used


NOW = 1_800_000_000.0


def workload(keys: int) -> tuple[list[str], list[str], list[Request]]:
    """Key ids, accounts and each key's records, as the usage_memory bench sends them."""
    rng = random.Random(5)  # noqa: S311 - synthetic traffic
    # Key ids arrive as text (decoded records, database rows): interned as the service does.
    key_ids = [sys.intern(str(uuid.uuid4())) for _ in range(keys)]
    accounts = [sys.intern(f"bench-acct-{i // 20:05d}") for i in range(keys)]

    def request(i: int, n: int) -> Request:
        at = NOW + (i * PER_KEY + n) * 0.002  # a key's records a few ms apart, as the bench's
        network = f"198.18.{i & 255}.0/24"
        tokens = (rng.randrange(20, 800), rng.randrange(100, 3000))
        return Request(
            str(uuid.uuid4()), key_ids[i], accounts[i], at, int(at // 60), network, 200,
            *tokens, 12.5, "agent", "/v1/generate",
        )  # fmt: skip

    return key_ids, accounts, [request(i, n) for n in range(PER_KEY) for i in range(keys)]


def directory(key_ids: list[str], accounts: list[str]) -> dict[str, KeyInfo]:
    rest = (None, None, None, None, False, None, None)
    rows = (
        (k, a, f"bench key {i}", "live", 100_000, "active", NOW, "active", NOW, None, 1, *rest)
        for i, (k, a) in enumerate(zip(key_ids, accounts, strict=True))
    )
    return {key.key_id: key for key in map(_info, rows)}


def activity(requests: list[Request], keys: dict[str, KeyInfo]) -> ActivityCache:
    cache = ActivityCache()
    config = DetectorConfig()
    findings: list[Any] = []
    for r in requests:
        state = cache.get(r.key_id)
        if state is None:
            state = KeyActivity(r.key_id, r.account_id)
            cache.put(state)
        state.observe(r, keys.get(r.key_id), config, findings)
    for r in requests:  # as after a commit
        state = cache._young[r.key_id]
        state.new_networks = None
        state.dirty = False
    return cache


def limit_directory(keys: dict[str, KeyInfo]) -> LimitDirectory:
    """The limit counter's directory, as its process holds it: its own key id strings (no
    other structure of that process keeps them)."""
    limited = LimitDirectory()
    for key in keys.values():
        limited.commit(dataclasses.replace(key, key_id=_copy(key.key_id)))
    return limited


def ingest_ids(requests: list[Request], shared: SharedIds) -> RecentIds:
    recent = RecentIds(1_000_000, shared)
    for start in range(0, len(requests), BATCH):
        recent.add(0, [_copy(r.record_id) for r in requests[start : start + BATCH]])
    return recent


def limit_ids(requests: list[Request], shared: SharedIds) -> list[PartitionIds]:
    parts = [PartitionIds(15, 500_000, shared, 2 << p) for p in range(PARTITIONS)]
    for start in range(0, len(requests), BATCH):
        chunk = [_copy(r.record_id) for r in requests[start : start + BATCH]]
        parts[start // BATCH % PARTITIONS].add(0, chunk)
    return parts


def limit_memory(requests: list[Request]) -> LimitCounter:
    counter = LimitCounter(lambda: None, LimitDirectory(), "t", horizon_minutes=15, max_ids=500_000)
    for start in range(0, len(requests), BATCH):
        counts = BatchCounts()
        for r in requests[start : start + BATCH]:
            counts.add(r)
        for key_id, (at, _) in counts.newest.items():
            counter._judged[key_id] = 0.0  # judged clear now (monotonic)
            counter._pending[key_id] = at
    counter._pending.clear()  # as after the next roll_over, a second later
    counter._forget_judged(2.0)
    return counter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--top", type=int, default=0, help="also list the top N lines")
    args = parser.parse_args()
    keys: int = args.keys
    key_ids, accounts, requests = workload(keys)
    tracemalloc.start(1)
    keep: list[Any] = []
    total = measure("key directory (KeyInfo)", lambda: directory(key_ids, accounts), keys, keep)
    known = keep[-1]
    total += measure(
        "limit counter directory (with key ids)", lambda: limit_directory(known), keys, keep
    )
    total += measure("activity cache (KeyActivity)", lambda: activity(requests, known), keys, keep)
    shared = SharedIds()
    total += measure("ingest recent ids", lambda: ingest_ids(requests, shared), keys, keep)
    total += measure("limit counter recent ids", lambda: limit_ids(requests, shared), keys, keep)
    total += measure("limit counter judged/pending", lambda: limit_memory(requests), keys, keep)
    print(f"{'total':<44} {total / 2**20:9.1f} MB {total / keys:8.0f} B/key")
    for stat in tracemalloc.take_snapshot().statistics("lineno")[: args.top]:
        print(stat)


if __name__ == "__main__":
    main()
