"""Streaming exports: JSON lines and CSV, written as the rows come, a chunk at a time."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any, Final

import orjson

from services.audit.entrypoints.schemas import CSV_COLUMNS, record_document

CHUNK_ROWS: Final = 200
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_FREE_TEXT: Final = {"actor_id", "actor_user_agent", "key_name", "correlation_id", "causation_id"}


async def jsonl(rows: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    chunk: list[bytes] = []
    async for row in rows:
        chunk.append(orjson.dumps(record_document(row), option=orjson.OPT_APPEND_NEWLINE))
        if len(chunk) >= CHUNK_ROWS:
            yield b"".join(chunk)
            chunk.clear()
    if chunk:
        yield b"".join(chunk)


def csv_cells(row: Any) -> list[str]:
    """A record as CSV cells. Free text that a spreadsheet would run as a formula gets a
    leading apostrophe (OWASP's advice for CSV injection)."""
    document = record_document(row)
    actor = document["actor"] or {}
    values = {
        **document,
        "actor_type": actor.get("type"),
        "actor_id": actor.get("id"),
        "actor_ip": actor.get("ip"),
        "actor_user_agent": actor.get("user_agent"),
        "key_id": document["target"]["key_id"],
        "key_name": document["target"]["key_name"],
        "details": row["details"],
    }
    cells = []
    for column in CSV_COLUMNS:
        value = values[column]
        text = "" if value is None else str(value)
        if column in _FREE_TEXT and text.startswith(_FORMULA_START):
            text = "'" + text
        cells.append(text)
    return cells


async def csv_rows(rows: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    async for row in rows:
        writer.writerow(csv_cells(row))
        count += 1
        if count % CHUNK_ROWS == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
