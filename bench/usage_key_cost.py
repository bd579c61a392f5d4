"""Why a usage record costs more as the active keys grow: the in-process work of the
ingest's batches (rollups, each key's detector state found or made, every record
observed, the touched keys' rows built) over usage_ingest's traffic (Zipf over N keys,
batches of 5,000), without Kafka or PostgreSQL.

`python -m bench.usage_key_cost`: for 10,000, 100,000 and 1,000,000 keys, the CPU per
record and what grows with the keys: the distinct keys of a batch (a rollup row, a state
row each) and the keys new to the process (a state made, a load from the database that
finds nothing, a row inserted). The work is per key of a batch, not per record.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from typing import Any

from bench.usage_support import zipf_weights
from services.usage.app.activity_cache import ActivityCache
from services.usage.domain.activity import KeyActivity
from services.usage.domain.detectors import DetectorConfig
from services.usage.domain.requests import Request, roll_up

BATCH = 5000
RECORDS = 200_000
RATE = 50_000.0


def records(keys: int) -> list[Request]:
    rng = random.Random(7)  # noqa: S311 - synthetic traffic
    ids = [sys.intern(str(uuid.uuid4())) for _ in range(keys)]
    chosen = rng.choices(ids, weights=zipf_weights(keys), k=RECORDS)
    start = 1_800_000_000.0
    return [
        Request(
            str(n),
            key,
            "acct",
            at := start + n / RATE,
            int(at // 60),
            "198.18.1.0/24",
            200,
            10,
            20,
            5.0,
        )
        for n, key in enumerate(chosen)
    ]


def run(keys: int) -> None:
    batch_records = records(keys)
    cache = ActivityCache()
    config = DetectorConfig(spike_cold_volume=10**9)  # as the bench: no cold-start alerts
    findings: list[Any] = []
    rows = new = 0
    began = time.process_time()
    for start in range(0, RECORDS, BATCH):
        batch = batch_records[start : start + BATCH]
        rows += len(roll_up(batch))
        states: dict[str, KeyActivity] = {}
        for r in batch:
            if r.key_id not in states:
                state = cache.get(r.key_id)
                if state is None:
                    state = KeyActivity(r.key_id, r.account_id)
                    cache.put(state)
                    new += 1
                states[r.key_id] = state
        for r in batch:
            states[r.key_id].observe(r, None, config, findings)
        dirty = [s for s in states.values() if s.dirty]
        _ = [[s.key_id for s in dirty], [s.first_used_at for s in dirty]]
        for state in states.values():
            state.dirty, state.new_networks = False, None
    cpu = time.process_time() - began
    print(
        f"{keys:>9,} keys: {cpu / RECORDS * 1e6:5.2f} us CPU a record in process;"
        f" keys a batch {rows / (RECORDS / BATCH):6.0f} ({rows / RECORDS:.2f} a record),"
        f" new keys a batch {new / (RECORDS / BATCH):6.0f} ({new / RECORDS:.2f} a record)",
        flush=True,
    )


if __name__ == "__main__":
    for size in (10_000, 100_000, 1_000_000):
        run(size)
