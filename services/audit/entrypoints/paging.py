"""The cursor of the audit log's pages: where the previous page ended, readable, and any
string of its declared shape a position (servicekit.paging)."""

from __future__ import annotations

from typing import Final

from servicekit.paging import INSTANT, SEQUENCE, cursor_fields, decode_instant, encode_instant
from services.audit.adapters.queries import Position

AUDIT_CURSOR: Final = rf"^{INSTANT}\.{SEQUENCE}$"
CURSOR_SHAPE: Final = "`<occurred_at in microseconds since 1970>.<sequence>` of its last record"


def encode_cursor(position: Position) -> str:
    return f"{encode_instant(position.occurred_at)}.{position.seq}"


def decode_cursor(text: str) -> Position:
    when, seq = cursor_fields(AUDIT_CURSOR, text)
    return Position(decode_instant(when), int(seq))
