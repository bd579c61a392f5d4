"""Cursors of the key service's lists: readable, and any string of their shape is valid.

A cursor names where the next page starts. Its shape is in the OpenAPI document as a
pattern, and every string of that shape decodes to a position, so a client (or a fuzzer)
that follows the document is never refused for a cursor; one of another shape is a 400
`bad_cursor`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import Query

from servicekit.paging import UUID, cursor_fields, cursor_query, decode_instant, encode_instant
from services.keys.adapters import queries
from services.keys.domain.key import AccessKey
from services.keys.entrypoints.schemas import KeyList, KeyView

# At most 16 digits: every such instant (1970 to 2286) is one PostgreSQL can compare.
KEY_LIST_CURSOR: Final = rf"^[0-9]{{1,16}}\.{UUID}$"
"""`<created_at in microseconds since 1970>.<key id>` of the last key of a page."""
HISTORY_CURSOR: Final = r"^[1-9][0-9]{0,8}$"
"""The stream version of the last event of a page."""

Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]


def cursor(pattern: str) -> Any:
    return cursor_query(pattern, "opaque, as the previous page gave it")


def decode_list_cursor(text: str) -> tuple[datetime, uuid.UUID]:
    micros, key_id = cursor_fields(KEY_LIST_CURSOR, text)
    return decode_instant(micros), uuid.UUID(key_id)


def encode_list_cursor(last: AccessKey) -> str:
    return f"{encode_instant(last.created_at)}.{last.key_id}"


def decode_history_cursor(text: str) -> int:
    (version,) = cursor_fields(HISTORY_CURSOR, text)
    return int(version)


async def key_list_page(
    pool: Any, account_id: str, limit: int, cursor: str | None, status: str | None
) -> KeyList:
    """One page of an account's keys, newest first, and where the next one starts."""
    after = decode_list_cursor(cursor) if cursor else None
    rows = await queries.list_keys(pool, account_id, limit + 1, after, status)
    return KeyList(
        items=[KeyView.of(k, used) for k, used in rows[:limit]],
        next_cursor=encode_list_cursor(rows[limit - 1][0]) if len(rows) > limit else None,
    )
