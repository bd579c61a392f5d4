"""Alerts and containment commands in PostgreSQL: stored once (their ids are derived
from what was found), and kept as the outbox of `usage.alerts` and `keys.commands`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contracts import Alert, DisableKey


async def insert_alerts(conn: Any, alerts: Sequence[Alert]) -> set[str]:
    """Store the alerts; returns the ids that were new (a known id is the same alert)."""
    if not alerts:
        return set()
    rows = await conn.fetch(
        "INSERT INTO alerts (alert_id, key_id, account_id, kind, severity, detected_at, body)"
        " SELECT i, k, a, kd, s, d, b::jsonb FROM unnest($1::uuid[], $2::uuid[], $3::text[],"
        " $4::text[], $5::text[], $6::timestamptz[], $7::text[]) AS u(i, k, a, kd, s, d, b)"
        " ON CONFLICT (alert_id) DO NOTHING RETURNING alert_id::text",
        [a.alert_id for a in alerts],
        [a.key_id for a in alerts],
        [a.account_id for a in alerts],
        [a.kind for a in alerts],
        [a.severity for a in alerts],
        [a.detected_at for a in alerts],
        [a.model_dump_json() for a in alerts],
    )
    return {row[0] for row in rows}


async def insert_commands(conn: Any, commands: Sequence[tuple[Alert, DisableKey]]) -> None:
    if not commands:
        return
    await conn.execute(
        "INSERT INTO containment_commands (command_id, alert_id, key_id, body)"
        " SELECT c, a, k, b::jsonb FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[])"
        " AS u(c, a, k, b) ON CONFLICT (command_id) DO NOTHING",
        [c.command_id for _, c in commands],
        [a.alert_id for a, _ in commands],
        [c.key_id for _, c in commands],
        [c.model_dump_json() for _, c in commands],
    )


async def unpublished_alerts(pool: Any, limit: int) -> list[tuple[str, str, str]]:
    """(alert_id, key_id, body) of alerts not yet on the topic, oldest first."""
    rows = await pool.fetch(
        "SELECT alert_id::text, key_id::text, body::text FROM alerts"
        " WHERE published_at IS NULL ORDER BY detected_at LIMIT $1",
        limit,
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def mark_published(pool: Any, alert_ids: Sequence[str]) -> None:
    await pool.execute(
        "UPDATE alerts SET published_at = now() WHERE alert_id = ANY($1::uuid[])", alert_ids
    )


async def unsent_commands(pool: Any, limit: int) -> list[tuple[str, str, str]]:
    """(command_id, key_id, body) of containment commands whose alert is published."""
    rows = await pool.fetch(
        "SELECT c.command_id::text, c.key_id::text, c.body::text FROM containment_commands c"
        " JOIN alerts a USING (alert_id) WHERE c.sent_at IS NULL AND a.published_at IS NOT NULL"
        " ORDER BY c.created_at LIMIT $1",
        limit,
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def mark_sent(pool: Any, command_ids: Sequence[str]) -> None:
    await pool.execute(
        "UPDATE containment_commands SET sent_at = now() WHERE command_id = ANY($1::uuid[])",
        command_ids,
    )
