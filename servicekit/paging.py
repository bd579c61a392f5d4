"""Cursors of the audit and usage lists: readable, and any string of their shape is valid.

A cursor names where the next page starts, as plain fields joined by dots (an instant as
signed microseconds since 1970-01-01 UTC, a sequence number, an id). Its shape is in the
OpenAPI document as a pattern, and every string of that shape decodes to a position, so a
client (or a fuzzer) that follows the document is never refused for a cursor; one of
another shape, the empty string included, is a 400 `bad_cursor`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fastapi import Query

from servicekit.errors import ApiError

UUID: Final = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
INSTANT: Final = r"-?[0-9]{1,18}"
"""Microseconds since 1970-01-01 UTC; beyond the times Python holds (years 1 to 9999), the
first or the last of them."""
SEQUENCE: Final = r"[0-9]{1,18}"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST: Final = datetime.min.replace(tzinfo=UTC)
_LAST: Final = datetime.max.replace(tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def cursor_query(pattern: str, shape: str) -> Any:
    """A `cursor` query parameter: its shape declared, its check ours (400 bad_cursor)."""
    return Query(
        max_length=200,
        description=f"next_cursor of the previous page: {shape}.",
        json_schema_extra={"pattern": pattern},
    )


def cursor_fields(pattern: str, text: str) -> list[str]:
    """The dot-separated fields of a cursor of the shape `pattern`, or a 400 bad_cursor."""
    if not re.fullmatch(pattern, text):
        raise ApiError(400, "bad_cursor", "The cursor is not one this API issued.")
    return text.split(".")


def encode_instant(at: datetime) -> str:
    return str((at - _EPOCH) // _MICROSECOND)


def decode_instant(text: str) -> datetime:
    micros = int(text)
    if micros < (_FIRST - _EPOCH) // _MICROSECOND:
        return _FIRST
    if micros > (_LAST - _EPOCH) // _MICROSECOND:
        return _LAST
    return _EPOCH + micros * _MICROSECOND
