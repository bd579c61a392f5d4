"""Realistic messages to put on a topic: usage-record-like JSON of about one kilobyte.

The fields are those of `contracts.usage.UsageRecord`; the user agent is padded so the
encoded value is `MESSAGE_SIZE` bytes, which is longer than the contract allows (500
characters): the bare-Kafka baseline never validates, it only wants a realistic shape.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

MESSAGE_SIZE: Final = 1024
"""Bytes of an encoded value (give or take a few: numbers vary in width)."""

_ENDPOINTS: Final = ("/v1/generate", "/v1/images", "/v1/edits", "/v1/variations", "/v1/upscale")
_MODELS: Final = ("instagen-xl", "instagen-base", "instagen-turbo", None)
_AGENT: Final = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36 instagen-sdk-python/2.4.1 httpx/0.27.0 "
)
_EPOCH: Final = datetime(2025, 1, 1, tzinfo=UTC)


def _record(i: int, key_id: uuid.UUID, user_agent: str) -> dict[str, Any]:
    return {
        "record_id": uuid.uuid4(),  # orjson writes UUIDs and datetimes itself, and fast
        "key_id": key_id,
        "account_id": f"acct-{i % 500:04d}",
        "occurred_at": _EPOCH + timedelta(milliseconds=i),
        "source_ip": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
        "user_agent": user_agent,
        "endpoint": _ENDPOINTS[i % len(_ENDPOINTS)],
        "model": _MODELS[i % len(_MODELS)],
        "status_code": 429 if i % 50 == 0 else 200,
        "tokens_in": 40 + i % 700,
        "tokens_out": 200 + (i * 7) % 3000,
        "latency_ms": round(80 + (i * 13) % 2500 + 0.25, 2),
    }


def _padded_agent() -> str:
    """The user agent that brings a typical record to `MESSAGE_SIZE` bytes."""
    bare = len(orjson.dumps(_record(123_456, uuid.uuid4(), "")))
    repeats = MESSAGE_SIZE // len(_AGENT) + 1
    return (_AGENT * repeats)[: MESSAGE_SIZE - bare]


_USER_AGENT: Final = _padded_agent()


def usage_message(i: int) -> tuple[bytes, bytes]:
    """The `i`-th message as (key, value): a fresh uuid as key, the record as JSON."""
    key_id = uuid.uuid4()
    return str(key_id).encode(), orjson.dumps(_record(i, key_id, _USER_AGENT))
