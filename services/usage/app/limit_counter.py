"""The limit counter: each key's records against its limits, one count for every verifier.

It reads `usage.records` in a consumer group of its own (enforcement never waits on the
analytic ingest). A batch is one transaction: the partitions' stored positions are locked
(what a crash or a rebalance already counted is skipped by offset), re-sent records are
skipped by record id (RecentIds, rebuilt from `limit_seen` when the memory is not current),
each key's windows are merged into its stored ones, the states of the keys with limits are
judged from the totals and stored, and the new positions and ids are written. The
publisher sends the stored states after the commit (app/limit_publisher.py).

The counter reads the key events in its own group too (`key_events`), into a directory
of its own (`limit_directory`; in memory only the limits of keys that have some,
app/limit_directory.py): a key whose limits changed is re-evaluated inside the
transaction that stores the change, whichever process the ingest runs in; and a limited
key whose window has ended is re-evaluated at the window's end (`roll_over`), so it is
cleared without waiting for its next record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from contracts import Event
from servicekit.consumer import Received
from services.usage.adapters import limit_store
from services.usage.app.directory import limits_changed
from services.usage.app.limit_directory import LimitDirectory
from services.usage.app.metrics import LIMIT_RECORDS_COUNTED, LIMIT_STATE_CHANGES
from services.usage.domain.keys import KeyInfo
from services.usage.domain.limits import (
    BatchCounts,
    Evaluated,
    KeyLimits,
    Span,
    Windows,
    evaluate,
    reached,
    totals_of,
)
from services.usage.domain.recent_ids import RecentIds, SharedIds
from services.usage.domain.requests import Request

ROLL_OVER_BATCH = 1000
MAX_REMEMBERED = 1_000_000
NO_LIMITS = KeyLimits()
Judged = tuple[str, str, KeyLimits, float]
"""A key to judge: key_id, account_id, its limits, at what event time."""


class LimitCounter:
    def __init__(
        self,
        pool: Callable[[], Any],
        directory: LimitDirectory,
        topic: str,
        *,
        horizon_minutes: int,
        max_ids: int,
        refresh_seconds: float = 1.0,
        on_states: Callable[[], None] = lambda: None,
        shared_ids: SharedIds | None = None,
    ) -> None:
        self.pool = pool
        self.directory = directory
        self.topic = topic
        self.horizon_minutes = horizon_minutes
        self.max_ids = max_ids
        self.on_states = on_states
        """Called after a commit that stored states (wakes the publisher)."""
        self.lock = asyncio.Lock()
        """Held by a batch and by a re-evaluation: the directory's limits and the stored
        states change together (key events hold it until the directory has the new limits)."""
        self._recent: dict[int, RecentIds] = {}
        self._shared_ids = shared_ids if shared_ids is not None else SharedIds()
        """The process's record fingerprints (the ingest's too): each partition's memory
        holds its ids there under a bit of its own."""
        self.refresh_seconds = refresh_seconds
        self._judged: dict[str, float] = {}
        """Keys whose last state this process stored was clear, and when (monotonic): such
        a key, judged again within `refresh_seconds` and reaching no limit, waits in
        `_pending` (its counts are stored, its state is refreshed by `roll_over`). Only
        the last `refresh_seconds` matter: `roll_over` forgets the older (an entry a key
        at a million keys, ~70 MB, if kept)."""
        self._pending: dict[str, float] = {}
        """Keys counted but not judged yet: the event time of their newest record."""

    async def count(self, batch: Sequence[Received[Request]]) -> int:
        """Count a batch; returns how many records it counted."""
        partitions = sorted({item.record.partition for item in batch})
        next_offsets: dict[int, int] = {}
        counted: dict[int, list[str]] = {p: [] for p in partitions}
        newest_minute = 0
        in_batch: set[str] = set()
        async with self.lock, self.pool().acquire() as conn, conn.transaction():
            await self.directory.ensure_loaded(conn)
            positions = await limit_store.lock_positions(conn, self.topic, partitions)
            for p in partitions:
                recent = self._recent.get(p)
                if recent is None or recent.next_offset != positions[p]:
                    await self._reload(conn, p, positions[p])
                    self._judged.clear()  # another process may have stored states since
            counts = BatchCounts()
            for item in batch:
                partition, offset = item.record.partition, item.record.offset
                if offset < positions[partition]:
                    continue  # counted before a crash or by this partition's former owner
                next_offsets[partition] = max(next_offsets.get(partition, 0), offset + 1)
                request = item.message
                record_id = request.record_id
                if record_id in in_batch or record_id in self._recent[partition]:
                    continue
                if counts.add(request):
                    in_batch.add(record_id)
                    counted[partition].append(record_id)
                    newest_minute = max(newest_minute, request.minute)
            limited = [k for k in counts.windows if self.directory.get(k) is not None]
            windows = await limit_store.add_counts(conn, counts.windows, limited)
            now = time.monotonic()
            states, waiting = self._judge(counts, windows, now)
            changes = await limit_store.save_states(conn, states)
            if next_offsets:
                await limit_store.save_positions(conn, self.topic, next_offsets)
                seen = [
                    (p, n - 1, newest_minute, " ".join(counted[p]))
                    for p, n in next_offsets.items()
                    if counted[p]
                ]
                await limit_store.save_seen(conn, self.topic, seen)
        for p, n in next_offsets.items():  # memory follows once the transaction committed
            self._recent[p].add(newest_minute, counted[p])
            self._recent[p].next_offset = n
        self._judging_done(states, now)
        for key_id, at in waiting.items():
            self._pending[key_id] = max(at, self._pending.get(key_id, at))
        total = sum(len(ids) for ids in counted.values())
        LIMIT_RECORDS_COUNTED.inc(total)
        LIMIT_STATE_CHANGES.inc(changes)
        if states:
            self.on_states()
        return total

    def _judge(
        self, counts: BatchCounts, windows: dict[str, Windows], now: float
    ) -> tuple[list[Evaluated], dict[str, float]]:
        """The states of the batch's keys with limits; a key still clear whose last clear
        state is younger than `refresh_seconds` waits instead (key -> event time)."""
        states: list[Evaluated] = []
        waiting: dict[str, float] = {}
        for key_id, (at, account_id) in counts.newest.items():
            known = self.directory.get(key_id)
            if known is None:
                continue  # no limits
            limits = known[1]
            totals = totals_of(windows[key_id])
            judged = self._judged.get(key_id)
            if (
                judged is not None
                and now - judged < self.refresh_seconds
                and not reached(limits, totals, at)
            ):
                waiting[key_id] = at
                continue
            states.append(evaluate(key_id, account_id, limits, totals, at))
        return states, waiting

    def _judging_done(self, states: Sequence[Evaluated], now: float) -> None:
        if len(self._judged) > MAX_REMEMBERED:
            self._judged.clear()
        for state in states:
            self._pending.pop(state.key_id, None)
            if state.state == "clear":
                self._judged[state.key_id] = now
            else:
                self._judged.pop(state.key_id, None)

    async def _reload(self, conn: Any, partition: int, next_offset: int) -> None:
        since = int(time.time() // 60) - self.horizon_minutes
        stored = await limit_store.load_seen(conn, self.topic, partition, since)
        old = self._recent.get(partition)
        if old is not None:
            old.reset(next_offset, [])  # its bits leave the shared fingerprints
        recent = self._recent[partition] = RecentIds(
            self.horizon_minutes, self.max_ids, self._shared_ids, 2 << partition
        )
        recent.reset(next_offset, [(minute, ids.split()) for minute, ids in stored])

    async def key_events(self, batch: Sequence[Received[Event]]) -> int:
        """Key events into the counter's directory, in one transaction with the
        re-evaluation of the keys whose limits they change. Returns states stored."""
        pending: dict[str, KeyInfo] = {}
        changed: dict[str, float] = {}
        async with self.lock:
            async with self.pool().acquire() as conn, conn.transaction():
                await self.directory.ensure_loaded(conn)
                for event, before, after in await self.directory.changes(conn, batch, pending):
                    if limits_changed(before, after):
                        changed[after.key_id] = event.occurred_at.timestamp()
                await self.directory.save(conn, pending)
                states = await self.limits_changed(
                    conn, [(pending[k], at) for k, at in changed.items()]
                )
            for key in pending.values():  # the memory follows once the transaction committed
                self.directory.commit(key)
        if states:
            self.on_states()
        return states

    async def limits_changed(self, conn: Any, changes: Sequence[tuple[KeyInfo, float]]) -> int:
        """Re-evaluate keys whose limits changed (key, event time), in the caller's
        transaction, the caller holding `lock`: a raised limit clears the key at once, a
        lowered one may limit it at once, a removed one clears it. Returns states stored."""
        if not changes:
            return 0
        key_ids = [key.key_id for key, _ in changes]
        for key_id in key_ids:  # judged afresh at their next record
            self._judged.pop(key_id, None)
        stored = await limit_store.stored_as_of(conn, key_ids)
        windows = await limit_store.stored_windows(conn, key_ids)
        # Judged where the key's newest records are (read before its key events, in a
        # replay, they have no state yet), and never before a state it had.
        wanted = [
            (
                key.key_id,
                key.account_id,
                key.limits,
                max(at, stored.get(key.key_id, at), windows.get(key.key_id, [at])[0]),
            )
            for key, at in changes
            if key.limits or key.key_id in stored
        ]
        return len(await self._reevaluate(conn, wanted))

    async def follow_directory(self) -> int:
        """Every second: the limits another counter process stored (from the key events of
        the partitions it reads, which may be of keys whose records this one counts). A key
        whose limits changed is judged again now, as the process that stored the change
        judged it (a state this one stored meanwhile, by the old limits, is replaced).
        Returns how many keys changed."""
        async with self.lock, self.pool().acquire() as conn, conn.transaction():
            changed = await self.directory.follow(conn)
            now = time.time()
            states = await self.limits_changed(conn, [(key, now) for key in changed])
        if states:
            self.on_states()
        return len(changed)

    async def roll_over(self) -> int:
        """Every second: clear (or limit again, by a longer window) the limited keys whose
        window ended, evaluated at the window's end, which becomes the state's as_of; and
        judge the keys whose counts moved since their last clear state (`_pending`)."""
        now = time.monotonic()
        async with self.lock:
            pending = [
                (key_id, at)
                for key_id, at in self._pending.items()
                if now - self._judged.get(key_id, 0.0) >= self.refresh_seconds
            ]
            async with self.pool().acquire() as conn, conn.transaction():
                await self.directory.ensure_loaded(conn)
                expired = await limit_store.expired_limits(conn, time.time(), ROLL_OVER_BATCH)
                wanted: dict[str, Judged] = {}  # one state per key
                for key_id, at in pending:
                    known = self.directory.get(key_id)
                    if known is not None:
                        wanted[key_id] = (key_id, *known, at)
                for key_id, account_id, until, as_of in expired:
                    # a key no longer (or not yet) known with limits: judged without, so cleared
                    account, limits = self.directory.get(key_id) or (account_id, NO_LIMITS)
                    earlier = wanted[key_id][3] if key_id in wanted else 0.0
                    wanted[key_id] = (key_id, account, limits, max(until, as_of, earlier))
                    self._judged.pop(key_id, None)
                states = await self._reevaluate(conn, list(wanted.values()))
            self._judging_done(states, now)
            for key_id, _ in pending:
                self._pending.pop(key_id, None)
            self._forget_judged(now)
        if states:
            self.on_states()
        return len(states)

    def _forget_judged(self, now: float) -> None:
        """Drop the keys judged longer ago than `refresh_seconds`: for them an entry and no
        entry mean the same (judge again)."""
        refresh = self.refresh_seconds
        self._judged = {k: at for k, at in self._judged.items() if now - at < refresh}

    async def _reevaluate(self, conn: Any, keys: Sequence[Judged]) -> list[Evaluated]:
        windows = await limit_store.stored_windows(conn, [key[0] for key in keys])
        states: list[Evaluated] = [
            evaluate(key_id, account_id, limits, _totals(windows, key_id), at)
            for key_id, account_id, limits, at in keys
        ]
        changed = await limit_store.save_states(conn, states)
        LIMIT_STATE_CHANGES.inc(changed)
        return states

    async def prune(self) -> None:
        now = time.time()
        async with self.pool().acquire() as conn:
            await limit_store.prune(conn, now, int(now // 60) - self.horizon_minutes)


def _totals(windows: dict[str, Windows], key_id: str) -> dict[tuple[Span, int], tuple[int, int]]:
    found = windows.get(key_id)
    return totals_of(found) if found is not None else {}
