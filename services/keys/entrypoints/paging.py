"""Cursors of the key service's lists: readable, and any string of their shape is valid.

A cursor names where the next page starts. Its shape is in the OpenAPI document as a
pattern, and every string of that shape decodes to a position, so a client (or a fuzzer)
that follows the document is never refused for a cursor; one of another shape is a 400
`bad_cursor`.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import Query

from servicekit.errors import ApiError
from services.keys.adapters import queries
from services.keys.domain.key import AccessKey
from services.keys.entrypoints.schemas import KeyList, KeyView

_UUID: Final = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
KEY_LIST_CURSOR: Final = rf"^[0-9]{{1,16}}\.{_UUID}$"
"""`<created_at in microseconds since 1970>.<key id>` of the last key of a page."""
HISTORY_CURSOR: Final = r"^[1-9][0-9]{0,8}$"
"""The stream version of the last event of a page."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]


def cursor(pattern: str) -> Any:
    """A `cursor` query parameter: its shape declared, its check ours (400 bad_cursor)."""
    return Query(
        max_length=200,
        description="next_cursor of the previous page.",
        json_schema_extra={"pattern": pattern},
    )


def _bad_cursor() -> ApiError:
    return ApiError(400, "bad_cursor", "The cursor is not one this API issued.")


def decode_list_cursor(text: str) -> tuple[datetime, uuid.UUID]:
    if not re.fullmatch(KEY_LIST_CURSOR, text):
        raise _bad_cursor()
    micros, key_id = text.split(".")
    return _EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(key_id)


def encode_list_cursor(last: AccessKey) -> str:
    micros = (last.created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{last.key_id}"


def decode_history_cursor(text: str) -> int:
    if not re.fullmatch(HISTORY_CURSOR, text):
        raise _bad_cursor()
    return int(text)


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
