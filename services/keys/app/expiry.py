"""The scheduler that appends KeyExpired once a key's `expires_at` has passed.

Verification refuses an expired key at once regardless; this makes the fact an event
(so audit and usage learn it). Every keys process may run it: two processes expiring the
same key conflict on the stream version and the loser finds nothing left to do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from contracts import Actor
from services.keys.adapters import queries
from services.keys.app import use_cases
from services.keys.app.unit_of_work import KeysUnitOfWork
from services.keys.domain.recorded import Meta

SCHEDULER = Actor(type="system", id="keys-expiry-scheduler")


def expire_due_keys(uow: KeysUnitOfWork, pool: Callable[[], Any]) -> Callable[[], Awaitable[int]]:
    async def run() -> int:
        now = datetime.now(UTC)
        expired = 0
        for key_id in await queries.due_to_expire(pool(), now):
            expired += await _expire(uow, key_id)
        return expired

    return run


async def _expire(uow: KeysUnitOfWork, key_id: UUID) -> int:
    meta = Meta(actor=SCHEDULER, occurred_at=datetime.now(UTC), correlation_id=f"expiry:{key_id}")
    outcome = await use_cases.in_transaction(uow, lambda tx: use_cases.expire(tx, key_id, meta))
    return 0 if outcome is None else 1
