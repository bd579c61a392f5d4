"""Read models: the current state of each key, and the lookup by secret hash.

An append writes them in its own statement (`states_upsert` and `extra_writes`, through
the unit of work); `rebuild` drops both read models and replays every event through the
same two, so the two paths cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import groupby
from operator import itemgetter
from typing import Any

import orjson

from services.keys.adapters import event_store
from services.keys.domain.key import AccessKey, evolve
from services.keys.domain.recorded import RecordedEvent

_STATE_COLUMNS = (
    "key_id, account_id, name, description, environment, scopes, rate_limit_per_hour,"
    " expires_at, prefix, status, disabled_reason, grace_period_ends_at, created_at,"
    " updated_at, version, rate_limit_per_minute, rate_limit_per_day, token_budget_tokens,"
    " token_budget_period, allowed_cidrs, rotated_at, previous_prefix,"
    " end_grace_when_quiet_seconds"
)
_STATE_NAMES = tuple(c.strip() for c in _STATE_COLUMNS.split(","))
_ON_CONFLICT = "ON CONFLICT (key_id) DO UPDATE SET " + ", ".join(
    f"{c} = EXCLUDED.{c}"
    for c in _STATE_NAMES
    if c not in ("key_id", "account_id", "environment", "created_at")
)
_UPSERT_STATES = (
    f"INSERT INTO key_state ({_STATE_COLUMNS}) SELECT {_STATE_COLUMNS}"
    f" FROM jsonb_populate_recordset(NULL::key_state, $1::jsonb) {_ON_CONFLICT}"
)
"""Several keys' states in one statement, as a JSON array of rows (arrays of arrays, like
scopes, do not pass through unnest)."""
# Leak reports and canaries (migration 010): one statement of their own beside the upsert.
_LEAK_COLUMNS = """
UPDATE key_state SET canary = $2, leak_source = $3, leak_url = $4, leak_action = $5,
    leak_reported_at = $6 WHERE key_id = $1
"""


def _state_values(state: AccessKey) -> tuple[Any, ...]:
    return (
        state.key_id,
        state.account_id,
        state.name,
        state.description,
        state.environment,
        list(state.scopes),
        state.rate_limit_per_hour,
        state.expires_at,
        state.prefix,
        state.status,
        state.disabled_reason,
        state.grace_period_ends_at,
        state.created_at,
        state.updated_at,
        state.version,
        state.rate_limit_per_minute,
        state.rate_limit_per_day,
        state.token_budget.tokens if state.token_budget else None,
        state.token_budget.period if state.token_budget else None,
        list(state.allowed_cidrs),
        state.rotated_at,
        state.previous_prefix,
        state.end_grace_when_quiet_seconds,
    )


def states_upsert(states: Iterable[AccessKey]) -> tuple[str, list[Any]]:
    """The statement (and its one argument) that brings key_state to each of `states`
    (one per key), for `event_store.append_recorded`'s `then`."""
    rows = [dict(zip(_STATE_NAMES, _state_values(s), strict=True)) for s in states]
    # default=str: the key ids read back from PostgreSQL are asyncpg UUIDs
    return _UPSERT_STATES, [orjson.dumps(rows, default=str).decode()]


def extra_writes(state: AccessKey, event: RecordedEvent) -> list[tuple[str, tuple[Any, ...]]]:
    """What `event` changes in the read models beyond key_state (canary and leak columns,
    the lookup by secret hash): none for most events."""
    writes: list[tuple[str, tuple[Any, ...]]] = []
    if event.event_type in ("KeyCreated", "KeyReportedLeaked") and (
        state.canary or state.leak_report is not None
    ):
        report = state.leak_report
        writes.append(
            (
                _LEAK_COLUMNS,
                (
                    state.key_id,
                    state.canary,
                    report and report.source,
                    report and report.url,
                    report and report.action,
                    report and report.reported_at,
                ),
            )
        )
    if event.event_type == "KeyRotated":
        # The old secret stays valid until the grace period ends (at once without one).
        writes.append(
            (
                "UPDATE key_lookup SET valid_until = $2 WHERE key_id = $1 AND valid_until IS NULL",
                (state.key_id, state.grace_period_ends_at or event.occurred_at),
            )
        )
    if event.event_type == "KeyGracePeriodEnded":
        # Every secret still in its grace period stops verifying now (the current has none).
        writes.append(
            (
                "UPDATE key_lookup SET valid_until = $2 WHERE key_id = $1 AND valid_until > $2",
                (state.key_id, state.grace_period_ends_at),
            )
        )
    if event.secret_hash is not None:
        writes.append(
            (
                "INSERT INTO key_lookup (secret_hash, key_id) VALUES ($1, $2)",
                (event.secret_hash, state.key_id),
            )
        )
    return writes


async def rebuild(pool: Any, progress: Callable[[int, int], None] | None = None) -> int:
    """Drop the read models and replay every event into them; returns the events replayed.

    A page of events at a time: the page's keys' latest states in one statement
    (`states_upsert`), then the page's other writes (`extra_writes`) in event order, each
    run of one statement sent at once."""
    async with pool.acquire() as conn, conn.transaction():
        total = await conn.fetchval("SELECT count(*) FROM events")
        await conn.execute("TRUNCATE key_state, key_lookup")
        states: dict[Any, AccessKey] = {}
        last_id, done = 0, 0
        while True:
            page = await event_store.all_events(conn, last_id, 2000)
            if not page:
                break
            touched: dict[Any, AccessKey] = {}
            writes: list[tuple[str, tuple[Any, ...]]] = []
            for row_id, event in page:
                state = evolve(states.get(event.key_id), event)
                states[event.key_id] = touched[event.key_id] = state
                writes.extend(extra_writes(state, event))
                last_id = row_id
            sql, args = states_upsert(touched.values())
            await conn.execute(sql, *args)
            for statement, run in groupby(writes, key=itemgetter(0)):
                await conn.executemany(statement, [arguments for _, arguments in run])
            done += len(page)
            if progress is not None:
                progress(done, total)
    return done
