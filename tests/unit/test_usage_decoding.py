"""The fast decoder of usage records (msgspec, `UsageWire`) never accepts what the contract
refuses, reads what it accepts exactly as the contract does, and on records of the shape
the gateways write accepts and refuses exactly what the contract does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import UsageRecord
from contracts.examples import example_usage_record
from services.usage.entrypoints.records import (
    UsageWire,
    _fast,
    decode_request,
    decode_requests,
    from_contract,
)

VALID: dict[str, Any] = orjson.loads(example_usage_record().model_dump_json())


def contract_view(raw: bytes) -> Any:
    try:
        return from_contract(UsageRecord.model_validate_json(raw))
    except ValidationError:
        return "refused"


def test_a_plain_record_takes_the_fast_path_and_reads_as_the_contract_does() -> None:
    raw = orjson.dumps(VALID)
    fast = _fast(raw)
    assert fast is not None
    assert fast == contract_view(raw)
    assert fast.network == "203.0.113.0/24"


@pytest.mark.parametrize(
    "change",
    [
        {"record_id": "6A1D8C52-1F0E-4A7E-9C55-5E2A4A0C7D11"},  # valid, not canonical
        {"occurred_at": "2026-11-26T19:00:00.123456+01:00"},  # valid, not UTC text
        {"source_ip": "::ffff:203.0.113.7"},  # valid, IPv4-mapped
        {"source_ip": "2001:db8::1"},
        {"status_code": "200"},  # the contract is lax about numbers in strings
        {"latency_ms": 12},
        {"occurred_at": "1970-01-01T00:00:00Z"},  # the first time counted
        {"occurred_at": "9998-12-31T23:59:59.999999Z"},  # the last
        {"occurred_at": "9998-12-31T23:59:59.999999-00:00"},
    ],
)
def test_valid_but_unusual_records_are_read_like_the_contract_reads_them(
    change: dict[str, Any],
) -> None:
    raw = orjson.dumps({**VALID, **change})
    assert decode_request(raw) == contract_view(raw)


@pytest.mark.parametrize(
    "change",
    [
        {"record_id": "not-a-uuid"},
        {"occurred_at": "2026-11-26T18:00:00"},  # no timezone
        {"occurred_at": "2026-02-30T18:00:00Z"},
        {"occurred_at": "1969-12-31T23:59:59.999999Z"},  # before the times usage counts
        {"occurred_at": "1970-01-01T00:30:00+01:00"},
        {"occurred_at": "9999-01-01T00:00:00Z"},  # no window after it could be named
        {"occurred_at": "9999-12-31T23:59:59.999999Z"},
        {"occurred_at": "0001-01-01T00:00:00Z"},
        {"source_ip": "203.0.113.07"},  # leading zero: ambiguous
        {"status_code": 99},
        {"status_code": True},
        {"tokens_in": -1},
        {"latency_ms": -0.5},
        {"endpoint": ""},
        {"user_agent": "x" * 501},
        {"model": "bad\x00model"},
        {"account_id": "has space"},
        {"unexpected": 1},
    ],
)
def test_records_the_contract_refuses_are_refused(change: dict[str, Any]) -> None:
    raw = orjson.dumps({**VALID, **change})
    assert _fast(raw) is None
    with pytest.raises(ValidationError):
        decode_request(raw)


def test_a_record_missing_a_field_is_refused() -> None:
    incomplete = {k: v for k, v in VALID.items() if k != "tokens_out"}
    with pytest.raises(ValidationError):
        decode_request(orjson.dumps(incomplete))


_values = st.one_of(
    st.none(),
    st.lists(st.integers(min_value=-(2**60), max_value=2**60), max_size=2),
    st.dictionaries(st.text(max_size=3), st.booleans(), max_size=2),
    st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        [
            "2026-11-26T18:00:00Z",
            "2026-11-26T18:00:00.123Z",
            "2026-11-26T18:00:00+00:00",
            "198.51.100.255",
            "256.1.1.1",
            "0.0.0.0",  # noqa: S104 - an address in a record, not a bind
            "6a1d8c52-1f0e-4a7e-9c55-5e2a4a0c7d11",
            "",
            "a" * 201,
        ]
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(VALID)), _values, max_size=4))
def test_whatever_the_fast_path_accepts_the_contract_accepts_identically(
    changes: dict[str, Any],
) -> None:
    raw = orjson.dumps({**VALID, **changes})
    fast = _fast(raw)
    if fast is not None:
        assert fast == contract_view(raw)


def test_the_wire_struct_has_the_contract_fields_and_bounds() -> None:
    import msgspec  # noqa: PLC0415 - only here

    wire = {f.name: f for f in msgspec.structs.fields(UsageWire)}
    contract = UsageRecord.model_fields
    assert set(wire) == set(contract)
    for name, field in contract.items():
        assert (wire[name].required) == field.is_required(), name
    schema = UsageRecord.model_json_schema()["properties"]
    wire_schema = msgspec.json.schema(UsageWire)["$defs"]["UsageWire"]["properties"]
    for name in ("endpoint", "status_code", "tokens_in", "tokens_out", "latency_ms"):
        for bound in ("minimum", "maximum", "minLength", "maxLength"):
            if bound in schema[name]:
                assert wire_schema[name][bound] == schema[name][bound], (name, bound)


_UUIDS = st.uuids().map(str)
_TIMES = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
)
_OPTIONAL = ("user_agent", "model", "secret")
_CANONICAL_SHAPES: dict[str, st.SearchStrategy[Any]] = {
    "record_id": _UUIDS,
    "key_id": _UUIDS,
    "account_id": st.one_of(
        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", fullmatch=True),
        st.from_regex(r"[A-Za-z0-9_.\- \n]{0,66}", fullmatch=True),
    ),
    "occurred_at": st.one_of(
        _TIMES.map(lambda t: t.isoformat(timespec="microseconds").replace("+00:00", "Z")),
        _TIMES.map(lambda t: t.isoformat(timespec="milliseconds")),
        _TIMES.map(lambda t: t.replace(tzinfo=None).isoformat()),  # no zone: refused
        st.sampled_from(["2026-02-30T18:00:00Z", "2026-11-26T24:00:00Z", "2026-11-26T18:00:60Z"]),
    ),
    "source_ip": st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str)),
    "endpoint": st.one_of(st.sampled_from(["/v1/generate", "/v1/images"]), st.text(max_size=205)),
    "user_agent": st.one_of(st.none(), st.text(max_size=505)),
    "model": st.one_of(st.none(), st.text(max_size=105)),
    "secret": st.one_of(st.none(), st.sampled_from(["current", "previous", "old", ""])),
    "status_code": st.one_of(st.integers(100, 599), st.integers(min_value=0, max_value=1000)),
    "tokens_in": st.integers(min_value=-2, max_value=2**53 + 2),
    "tokens_out": st.integers(min_value=-2, max_value=2**53 + 2),
    "latency_ms": st.one_of(
        st.floats(allow_nan=False, allow_infinity=False), st.integers(-5, 10**6)
    ),
}


@settings(max_examples=1500, deadline=None)
@given(
    st.fixed_dictionaries(
        {k: v for k, v in _CANONICAL_SHAPES.items() if k not in _OPTIONAL},
        optional={k: _CANONICAL_SHAPES[k] for k in _OPTIONAL},
    ),
    st.sampled_from([None, *sorted(_CANONICAL_SHAPES)]),
)
def test_on_the_gateways_shape_the_wire_struct_and_the_contract_give_the_same_verdict(
    record: dict[str, Any], missing: str | None
) -> None:
    """Each field in the form gateways write it (canonical uuids, UTC times, addresses as
    text), with any value of its type, a field possibly missing: msgspec accepts exactly
    when the contract does, and then reads the same request."""
    record.pop(missing or "", None)
    raw = orjson.dumps(record)
    fast, contract = _fast(raw), contract_view(raw)
    assert ("refused" if fast is None else fast) == contract


def _record(**changes: Any) -> bytes:
    return orjson.dumps({**VALID, **changes})


def test_a_batch_reads_as_its_records_do_one_by_one() -> None:
    batch = [_record(record_id=f"6a1d8c52-1f0e-4a7e-9c55-5e2a4a0c7d{n:02x}") for n in range(50)] + [
        _record(occurred_at="2026-11-26T19:00:00.5+01:00"),
        b"{not json",
    ]
    decoded = decode_requests(batch)
    assert decoded[:-1] == [decode_request(raw) for raw in batch[:-1]]
    assert decoded[-1] is None  # left to the record decoder, whose verdict stands


@pytest.mark.parametrize(
    "bad",
    [
        {"record_id": "6a1d8c52-1f0e-4a7e-9c55-5e2a4a0c7d11\n6a1d8c52-1f0e-4a7e-9c55-5e2a4a0c7d12"},
        {"record_id": "6A1D8C52-1F0E-4A7E-9C55-5E2A4A0C7D11"},
        {"occurred_at": "2026-11-26T18:00:00"},
        {"occurred_at": "2026-11-26T18:00:00Z\n2026-11-26T18:00:00Z"},
    ],
)
def test_one_odd_record_in_a_batch_is_judged_alone(bad: dict[str, Any]) -> None:
    """The batch-wide shape check fails; each record is then checked on its own."""
    batch = [_record(), _record(**bad), _record(record_id="6a1d8c52-1f0e-4a7e-9c55-5e2a4a0c7d12")]
    decoded = decode_requests(batch)
    assert decoded[0] == decode_request(batch[0])
    assert decoded[1] is None
    assert decoded[2] == decode_request(batch[2])
