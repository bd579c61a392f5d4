"""Recording a large batch part by part: the CPU work of each part (sealing its records
into their chains) runs while the previous part is being written (COPY).

One transaction, with the heads of every chain the batch touches locked up front (the
caller names the accounts and keys), exactly as `Recorder.record` does it; only the work
is interleaved. If the parts turn out to hold a recorded source (a redelivery), the whole
batch is written again the careful way.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Final

import asyncpg

from services.audit.adapters.chain_store import SOURCE_UNIQUE, ChainTransaction, random_ids
from services.audit.app.recording import Recorder, count_appended
from services.audit.domain.appending import Appended, KeyName, append_entries
from services.audit.domain.entries import Entry

PART: Final = 250
"""Entries per part: small enough to overlap well, large enough for one COPY to pay."""


async def record_parts(
    recorder: Recorder,
    accounts: set[str],
    key_ids: set[uuid.UUID],
    parts: Iterator[list[Entry]],
    known_names: Mapping[uuid.UUID, str] | None = None,
) -> dict[uuid.UUID, str] | None:
    """Store the entries `parts` yields (for chains `accounts`, about keys `key_ids`, of
    which `known_names` are known to be named so in the database); returns the names of
    the keys once they are stored (None when the batch held a recorded source: then they
    are not known). An exception from `parts` undoes everything."""
    produced: list[Entry] = []

    def kept() -> Iterator[list[Entry]]:
        for part in parts:
            produced.extend(part)
            yield part

    try:
        async with recorder.store.transaction() as tx:
            appended, names = await _interleaved(
                recorder, tx, accounts, key_ids, kept(), known_names or {}
            )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != SOURCE_UNIQUE:
            raise
        for part in parts:  # the rest, then everything again, skipping what is recorded
            produced.extend(part)
        await recorder.record(produced, redelivered=True)
        return None
    count_appended(appended)
    return names


async def _interleaved(
    recorder: Recorder,
    tx: ChainTransaction,
    accounts: set[str],
    key_ids: set[uuid.UUID],
    parts: Iterable[list[Entry]],
    known_names: Mapping[uuid.UUID, str],
) -> tuple[Appended, dict[uuid.UUID, str]]:
    heads = await tx.lock_heads(accounts)
    start = dict(heads)
    names = dict(known_names)
    unknown = key_ids - names.keys()
    if unknown:
        names.update(await tx.key_names(unknown))
    recorded_at = recorder.clock()
    seen: set[str] = set()
    total = Appended()
    writing: asyncio.Future[None] | None = None
    try:
        for part in parts:  # computing this part overlaps the writing of the previous one
            appended = append_entries(
                recorder.key, heads, part, seen, names, recorded_at, random_ids(len(part))
            )
            seen.update(e.source_id for e in part)
            heads.update(appended.heads)
            names.update({k: n.name for k, n in appended.names.items()})
            _merge_names(total.names, appended.names)
            total.records.extend(appended.records)
            if writing is not None:
                await writing
            writing = asyncio.ensure_future(tx.append(appended.records))
            await asyncio.sleep(0)  # let the write start before the next part's CPU work
        if writing is not None:
            await writing
    finally:
        # A failure (a part that fails its contract, say) undoes the transaction; the write
        # in flight is let finish first, as its connection can do nothing else meanwhile.
        if writing is not None and not writing.done():
            with contextlib.suppress(Exception):
                await writing
    total.heads = {a: h for a, h in heads.items() if h != start[a]}
    await tx.move_heads(total.heads.values())
    await tx.remember_names(total.names)
    return total, names


def _merge_names(into: dict[uuid.UUID, KeyName], names: dict[uuid.UUID, KeyName]) -> None:
    for key_id, name in names.items():
        known = into.get(key_id)
        if known is None or known.version < name.version:
            into[key_id] = name
