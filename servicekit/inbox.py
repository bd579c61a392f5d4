"""The inbox: which consumed messages a service has taken effect of.

Keyed by (topic, partition, offset), so a redelivered message is a no-op. A service's
first handler of a topic records here; later handlers add their own effects in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from servicekit.consumer import Received


async def record_consumed(conn: Any, batch: Sequence[Received[Any]]) -> int:
    """Insert the batch's positions; returns how many were new."""
    rows = [
        (
            r.record.topic,
            r.record.partition,
            r.record.offset,
            r.record.key.decode("utf-8", "replace") if r.record.key else None,
        )
        for r in batch
    ]
    inserted: int = await conn.fetchval(
        """
        WITH new AS (
            INSERT INTO consumed_messages (topic, partition, "offset", message_key)
            SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[])
            ON CONFLICT DO NOTHING
            RETURNING 1
        )
        SELECT count(*) FROM new
        """,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )
    return inserted
