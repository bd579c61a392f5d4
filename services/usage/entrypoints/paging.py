"""Cursors of the usage service's lists: where the previous page ended, readable, and any
string of their declared shape a position (servicekit.paging)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final

from fastapi import Query

from servicekit.paging import INSTANT, UUID, cursor_fields, decode_instant, encode_instant

BUCKET_CURSOR: Final = rf"^{INSTANT}$"
BUCKET_SHAPE: Final = "`<start of its last bucket, in microseconds since 1970>`"
ALERT_CURSOR: Final = rf"^{INSTANT}\.{UUID}$"
ALERT_SHAPE: Final = "`<detected_at in microseconds since 1970>.<alert_id>` of its last alert"

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]


def encode_bucket_cursor(start: datetime) -> str:
    return encode_instant(start)


def decode_bucket_cursor(text: str) -> datetime:
    (start,) = cursor_fields(BUCKET_CURSOR, text)
    return decode_instant(start)


def encode_alert_cursor(detected_at: datetime, alert_id: uuid.UUID) -> str:
    return f"{encode_instant(detected_at)}.{alert_id}"


def decode_alert_cursor(text: str) -> tuple[datetime, uuid.UUID]:
    detected_at, alert_id = cursor_fields(ALERT_CURSOR, text)
    return decode_instant(detected_at), uuid.UUID(alert_id)
