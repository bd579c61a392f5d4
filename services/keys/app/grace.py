"""The scheduler that ends a rotation's grace period once its old secret is quiet.

A rotation with `end_grace_when_quiet_seconds` keeps the old secret working only while
clients still use it: every verifier that matches the old secret notes when (this
process's `Verifier`, flushed to `previous_secret_last_used`; gateways' usage records
marked `secret: previous`, through entrypoints/last_use.py), and once no use is newer
than the quiet time, `KeyGracePeriodEnded` (reason `old_secret_quiet`) is appended. It
is never later than grace_period_ends_at (the old secret stops then anyway) and never
twice. Every keys process may run it: two that race conflict on the stream version and
the loser finds nothing left to do; the state lives in PostgreSQL, so a restart resumes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from contracts import Actor
from services.keys.adapters import queries
from services.keys.app import use_cases
from services.keys.app.activity import LastUsedTracker
from services.keys.app.unit_of_work import KeysUnitOfWork
from services.keys.domain.recorded import Meta

SCHEDULER = Actor(type="system", id="keys-grace-scheduler")


def end_quiet_grace_periods(
    uow: KeysUnitOfWork, pool: Callable[[], Any], previous_uses: LastUsedTracker
) -> Callable[[], Awaitable[int]]:
    async def run() -> int:
        await previous_uses.flush()  # this process's own uses count before it decides
        ended = 0
        for key_id, _ in await queries.quiet_old_secrets(pool(), datetime.now(UTC)):
            ended += await _end(uow, key_id)
        return ended

    return run


async def _end(uow: KeysUnitOfWork, key_id: UUID) -> int:
    meta = Meta(actor=SCHEDULER, occurred_at=datetime.now(UTC), correlation_id=f"grace:{key_id}")
    outcome = await use_cases.in_transaction(
        uow, lambda tx: use_cases.end_grace_if_quiet(tx, key_id, meta)
    )
    return 0 if outcome is None else 1
