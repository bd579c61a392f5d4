"""Read models: the current state of each key, and the lookup by secret hash.

`project` runs in the append's transaction; `rebuild` drops both read models and runs
the same `project` over every event, so the two paths cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.keys.adapters import event_store
from services.keys.domain.key import AccessKey, evolve
from services.keys.domain.recorded import RecordedEvent

_UPSERT_STATE = """
INSERT INTO key_state (key_id, account_id, name, description, environment, scopes,
    rate_limit_per_hour, expires_at, prefix, status, disabled_reason, grace_period_ends_at,
    created_at, updated_at, version, rate_limit_per_minute, rate_limit_per_day,
    token_budget_tokens, token_budget_period, allowed_cidrs, rotated_at, previous_prefix,
    end_grace_when_quiet_seconds)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
    $20, $21, $22, $23)
ON CONFLICT (key_id) DO UPDATE SET
    name = EXCLUDED.name, description = EXCLUDED.description, scopes = EXCLUDED.scopes,
    rate_limit_per_hour = EXCLUDED.rate_limit_per_hour, expires_at = EXCLUDED.expires_at,
    prefix = EXCLUDED.prefix, status = EXCLUDED.status,
    disabled_reason = EXCLUDED.disabled_reason,
    grace_period_ends_at = EXCLUDED.grace_period_ends_at,
    updated_at = EXCLUDED.updated_at, version = EXCLUDED.version,
    rate_limit_per_minute = EXCLUDED.rate_limit_per_minute,
    rate_limit_per_day = EXCLUDED.rate_limit_per_day,
    token_budget_tokens = EXCLUDED.token_budget_tokens,
    token_budget_period = EXCLUDED.token_budget_period,
    allowed_cidrs = EXCLUDED.allowed_cidrs,
    rotated_at = EXCLUDED.rotated_at, previous_prefix = EXCLUDED.previous_prefix,
    end_grace_when_quiet_seconds = EXCLUDED.end_grace_when_quiet_seconds
"""
# Leak reports and canaries (migration 010): one statement of their own beside the upsert.
_LEAK_COLUMNS = """
UPDATE key_state SET canary = $2, leak_source = $3, leak_url = $4, leak_action = $5,
    leak_reported_at = $6 WHERE key_id = $1
"""


def state_upsert(state: AccessKey) -> tuple[str, tuple[Any, ...]]:
    """The statement (and its arguments) that brings key_state to `state`."""
    return _UPSERT_STATE, (
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


async def project(
    conn: Any, state: AccessKey, event: RecordedEvent, state_written: bool = False
) -> None:
    """Bring the read models to `state`, the key's state after `event`. `state_written`:
    key_state already holds the key's final state (the append wrote it in its own
    statement, see `state_upsert`), so only the other read models are left."""
    if not state_written:
        sql, args = state_upsert(state)
        await conn.execute(sql, *args)
    if event.event_type in ("KeyCreated", "KeyReportedLeaked") and (
        state.canary or state.leak_report is not None
    ):
        report = state.leak_report
        await conn.execute(
            _LEAK_COLUMNS,
            state.key_id,
            state.canary,
            report and report.source,
            report and report.url,
            report and report.action,
            report and report.reported_at,
        )
    if event.event_type == "KeyRotated":
        # The old secret stays valid until the grace period ends (at once without one).
        await conn.execute(
            "UPDATE key_lookup SET valid_until = $2 WHERE key_id = $1 AND valid_until IS NULL",
            state.key_id,
            state.grace_period_ends_at or event.occurred_at,
        )
    if event.event_type == "KeyGracePeriodEnded":
        # Every secret still in its grace period stops verifying now (the current has none).
        await conn.execute(
            "UPDATE key_lookup SET valid_until = $2 WHERE key_id = $1 AND valid_until > $2",
            state.key_id,
            state.grace_period_ends_at,
        )
    if event.secret_hash is not None:
        await conn.execute(
            "INSERT INTO key_lookup (secret_hash, key_id) VALUES ($1, $2)",
            event.secret_hash,
            state.key_id,
        )


async def rebuild(pool: Any, progress: Callable[[int, int], None] | None = None) -> int:
    """Drop the read models and replay every event into them; returns the events replayed."""
    async with pool.acquire() as conn, conn.transaction():
        total = await conn.fetchval("SELECT count(*) FROM events")
        await conn.execute("TRUNCATE key_state, key_lookup")
        states: dict[Any, AccessKey] = {}
        last_id, done = 0, 0
        while True:
            page = await event_store.all_events(conn, last_id, 2000)
            if not page:
                break
            for row_id, event in page:
                state = evolve(states.get(event.key_id), event)
                states[event.key_id] = state
                await project(conn, state, event)
                last_id = row_id
            done += len(page)
            if progress is not None:
                progress(done, total)
    return done
