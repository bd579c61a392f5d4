"""What the key service learns from a usage record: which key was used, when and with
what outcome, read as the contract reads it; and which records count as a use."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import UsageRecord
from contracts.examples import example_usage_record
from contracts.usage import REFUSED_STATUSES
from services.keys.app.activity import Use, latest_uses
from services.keys.entrypoints.last_use import _fast, decode_use
from services.usage.domain.requests import AUTH_FAILURES

VALID: dict[str, Any] = orjson.loads(example_usage_record().model_dump_json())
T0 = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)


def contract_view(raw: bytes) -> Use:
    record = UsageRecord.model_validate_json(raw)
    return Use(
        str(record.key_id), record.account_id, record.occurred_at, record.status_code, record.secret
    )


def test_a_plain_record_takes_the_fast_path_and_reads_as_the_contract_does() -> None:
    raw = orjson.dumps(VALID)
    assert _fast(raw) is not None
    assert decode_use(raw) == contract_view(raw)


@pytest.mark.parametrize(
    "change",
    [
        {"key_id": "6A1D8C52-1F0E-4A7E-9C55-5E2A4A0C7D11"},  # valid, not canonical
        {"key_id": "{6a1d8c52-1f0e-4a7e-9c55-5e2a4a0c7d11}"},
        {"occurred_at": "2026-11-26T19:00:00.123456+01:00"},  # valid, not UTC text
        {"occurred_at": "2026-11-26T18:00:00Z"},
        {"status_code": "200"},  # the contract is lax about numbers in strings
    ],
)
def test_valid_but_unusual_records_are_read_like_the_contract_reads_them(
    change: dict[str, Any],
) -> None:
    raw = orjson.dumps({**VALID, **change})
    assert decode_use(raw) == contract_view(raw)  # the same instant, whatever its offset


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"key_id": "\xff"}',
        orjson.dumps({k: v for k, v in VALID.items() if k != "key_id"}),
        orjson.dumps({**VALID, "key_id": "not-a-uuid"}),
        orjson.dumps({**VALID, "occurred_at": "2026-11-26T18:00:00"}),  # no timezone
        orjson.dumps({**VALID, "occurred_at": "2026-02-30T18:00:00Z"}),
        orjson.dumps({**VALID, "occurred_at": 1764180000}),  # a number, not a time
        orjson.dumps({**VALID, "occurred_at": "9999-06-01T00:00:00Z"}),  # beyond usage's times
        orjson.dumps({**VALID, "occurred_at": "1969-12-31T23:59:59Z"}),
        orjson.dumps({**VALID, "status_code": 99}),
        orjson.dumps({**VALID, "status_code": None}),
        orjson.dumps({**VALID, "account_id": ""}),
        orjson.dumps([VALID]),
    ],
)
def test_a_record_that_cannot_say_which_key_when_or_how_is_refused(raw: bytes) -> None:
    with pytest.raises(ValidationError):  # a dead letter, with the reason
        decode_use(raw)
    with pytest.raises(ValidationError):
        UsageRecord.model_validate_json(raw)


@given(
    key_id=st.uuids().map(str) | st.text(max_size=40),
    occurred_at=st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat())
    | st.text(max_size=40),
    status=st.integers(0, 1000) | st.booleans() | st.text(max_size=4),
)
def test_the_fast_path_reads_only_what_the_contract_reads_the_same_way(
    key_id: str, occurred_at: str, status: object
) -> None:
    raw = orjson.dumps(
        {**VALID, "key_id": key_id, "occurred_at": occurred_at, "status_code": status}
    )
    fast = _fast(raw)
    if fast is not None:
        assert fast == contract_view(raw)


def _use(key: str, minutes: int, status: int = 200, account: str = "acme") -> Use:
    return Use(key, account, T0 + timedelta(minutes=minutes), status)


def test_a_batch_folds_into_each_keys_latest_use_and_refusals_are_not_uses() -> None:
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    batch = [
        _use(a, 1),
        _use(a, 5, status=429),  # limited: the key was used
        _use(a, 3, status=500),
        _use(a, 9, status=401),  # refused for the key: not a use
        _use(b, 7, status=403),
        _use(c, 2, account="other"),  # another account's claim is kept apart
        _use(c, 4),
    ]
    assert latest_uses(batch) == {
        (a, "acme"): T0 + timedelta(minutes=5),
        (c, "other"): T0 + timedelta(minutes=2),
        (c, "acme"): T0 + timedelta(minutes=4),
    }


def test_the_keys_and_usage_services_count_the_same_refusals() -> None:
    """The usage service's rollups count these as auth failures: what both call not a use."""
    assert REFUSED_STATUSES == AUTH_FAILURES
