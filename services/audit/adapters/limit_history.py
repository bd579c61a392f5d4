"""Where each key's limit state stands in the log: its newest limit record."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from services.audit.domain.entries import LIMIT_ACTIONS


async def newest_limit_records(
    pool: Any, account_ids: Collection[str], key_ids: Collection[str]
) -> dict[str, tuple[str, str]]:
    """(action, details) of each key's newest limit record; keys without one are absent."""
    rows = await pool.fetch(
        "SELECT DISTINCT ON (key_id) key_id::text, action, details::text FROM audit_records"
        " WHERE account_id = ANY($1::text[]) AND key_id = ANY($2::uuid[])"
        " AND action = ANY($3::text[]) ORDER BY key_id, occurred_at DESC, seq DESC",
        list(account_ids),
        list(key_ids),
        list(LIMIT_ACTIONS),
    )
    return {r[0]: (r[1], r[2]) for r in rows}
