"""The fast decoder of key events (msgspec, `EventWire`) never accepts what the contract
refuses, reads what it accepts exactly as the contract does (the same audit entry), and on
events of the shape the keys service writes accepts and refuses exactly what the contract
does."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import EVENT_ADAPTER, EVENT_TYPES, Actor, EventEnvelope
from contracts.examples import example_events
from services.audit.domain.entries import Entry
from services.audit.domain.translate import event_data, from_event
from services.audit.entrypoints.key_events import (
    DATA_MODELS,
    ActorWire,
    EventWire,
    decode_event,
    decode_events,
    fast_entry,
    renamed,
)

EXAMPLES: dict[str, dict[str, Any]] = {
    e.event_type: orjson.loads(e.model_dump_json()) for e in example_events(account_id="acme")
}
VALID = EXAMPLES["KeyDisabled"]


def _dump(document: dict[str, Any]) -> bytes:
    """As JSON, ints beyond 64 bits and escaped text included (orjson refuses the first)."""
    return json.dumps(document, separators=(",", ":")).encode()


def contract_view(raw: bytes) -> Entry | str:
    try:
        return from_event(EVENT_ADAPTER.validate_json(raw))
    except ValidationError:
        return "refused"


def test_every_event_type_has_its_data_model() -> None:
    assert set(DATA_MODELS) == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_each_example_takes_the_fast_path_and_reads_as_the_contract_does(event_type: str) -> None:
    raw = orjson.dumps(EXAMPLES[event_type])
    fast = fast_entry(raw)
    assert fast is not None
    assert fast == contract_view(raw)


@pytest.mark.parametrize(
    "change",
    [
        {"event_id": "6A1D8C52-1F0E-4A7E-9C55-5E2A4A0C7D11"},  # valid, not canonical
        {"key_id": "6a1d8c521f0e4a7e9c555e2a4a0c7d11"},
        {"occurred_at": "2026-11-26T19:00:00.123456+01:00"},  # valid, not UTC text
        {"actor": {"type": "user", "id": "u", "ip": "::ffff:203.0.113.7"}},  # IPv4-mapped
        {"actor": {"type": "user", "id": "u", "ip": "2001:db8::1"}},
        {"stream_version": "2"},  # the contract is lax about numbers in strings
        {"position": 7.0},
        {"stream_version": True},  # read as 1
    ],
)
def test_valid_but_unusual_events_are_read_like_the_contract_reads_them(
    change: dict[str, Any],
) -> None:
    raw = orjson.dumps({**VALID, **change})
    fast = fast_entry(raw)
    assert fast is None or fast == contract_view(raw)
    assert decode_event(raw) == contract_view(raw)


@pytest.mark.parametrize(
    "change",
    [
        {"event_id": "not-a-uuid"},
        {"event_type": "KeyExploded"},
        {"event_type": "KeyCreated"},  # a disabled key's data is not a creation's
        {"occurred_at": "2026-11-26T18:00:00"},  # no timezone
        {"occurred_at": "2026-02-30T18:00:00Z"},
        {"occurred_at": 1_700_000_000},
        {"schema_version": 2},
        {"schema_version": True},
        {"stream_version": 0},
        {"position": 2**63},
        {"account_id": "has space"},
        {"actor": {"type": "robot", "id": "r"}},
        {"actor": {"type": "user", "id": ""}},
        {"actor": {"type": "user", "id": "u", "ip": "203.0.113.07"}},
        {"actor": {"type": "user", "id": "bad\x00id"}},
        {"correlation_id": ""},
        {"causation_id": "x" * 201},
        {"correlation_id": "a\x00b"},
        {"data": {"reason": ""}},
        {"data": {"reason": "x", "extra": 1}},
        {"data": []},
        {"unexpected": 1},
    ],
)
def test_events_the_contract_refuses_are_refused(change: dict[str, Any]) -> None:
    raw = orjson.dumps({**VALID, **change})
    assert fast_entry(raw) is None
    with pytest.raises(ValidationError):
        decode_event(raw)


def test_a_creation_is_the_first_event_of_its_key() -> None:
    raw = orjson.dumps({**EXAMPLES["KeyCreated"], "stream_version": 2})
    assert fast_entry(raw) is None
    assert contract_view(raw) == "refused"


def test_an_event_missing_a_field_is_refused() -> None:
    for field in ("event_id", "key_id", "account_id", "actor", "data", "occurred_at"):
        incomplete = {k: v for k, v in VALID.items() if k != field}
        assert fast_entry(orjson.dumps(incomplete)) is None
        with pytest.raises(ValidationError):
            decode_event(orjson.dumps(incomplete))


def test_the_wire_structs_have_the_contract_fields_and_bounds() -> None:
    for wire_type, contract in ((EventWire, EventEnvelope), (ActorWire, Actor)):
        wire = {f.name: f for f in msgspec.structs.fields(wire_type)}
        assert set(wire) == set(contract.model_fields), wire_type
        for name, field in contract.model_fields.items():
            if name != "event_type":  # defaulted in Python, required on the wire
                assert wire[name].required == field.is_required(), name
        schema = contract.model_json_schema()
        wire_schema = msgspec.json.schema(wire_type)["$defs"][wire_type.__name__]["properties"]
        for name, prop in schema["properties"].items():
            shapes = [prop, *prop.get("anyOf", [])]
            wire_shapes = [wire_schema[name], *wire_schema[name].get("anyOf", [])]
            for bound in ("minimum", "maximum", "minLength", "maxLength", "enum"):
                found = {_bound(s, bound) for s in shapes if _bound(s, bound) is not None}
                wired = {_bound(s, bound) for s in wire_shapes if _bound(s, bound) is not None}
                assert found <= wired, (wire_type.__name__, name, bound)


def _bound(shape: dict[str, Any], bound: str) -> Any:
    """A JSON Schema bound; a `const` is an enum of one value."""
    if bound == "enum":
        values = shape.get("enum", [shape["const"]] if "const" in shape else None)
        return None if values is None else tuple(sorted(values))
    return shape.get(bound)


_values = st.one_of(
    st.none(),
    st.lists(st.integers(min_value=-(2**60), max_value=2**60), max_size=2),
    st.dictionaries(st.text(max_size=3), st.booleans(), max_size=2),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        [
            "2026-11-26T18:00:00Z",
            "2026-11-26T18:00:00.123Z",
            "2026-11-26T18:00:00+00:00",
            "198.51.100.255",
            "6a1d8c52-1f0e-4a7e-9c55-5e2a4a0c7d11",
            "KeyCreated",
            "KeyEnabled",
            "",
            "a" * 201,
            {"type": "service", "id": "billing"},
            {"type": "user", "id": "u", "ip": "256.1.1.1"},
            {"reason": "paid"},
            {"reason": None},
            {},
        ]
    ),
)


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(sorted(EXAMPLES)),
    st.dictionaries(st.sampled_from(sorted(VALID)), _values, max_size=4),
)
def test_whatever_the_fast_path_accepts_the_contract_accepts_identically(
    event_type: str, changes: dict[str, Any]
) -> None:
    raw = _dump({**EXAMPLES[event_type], **changes})
    fast = fast_entry(raw)
    if fast is not None:
        assert fast == contract_view(raw)


_UUIDS = st.uuids().map(str)
_TIMES = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
)
_TEXT = st.one_of(st.sampled_from(["x", "a" * 200, "a" * 201]), st.text(max_size=205))
_OPTIONAL = ("correlation_id", "causation_id", "schema_version")
_CANONICAL_SHAPES: dict[str, st.SearchStrategy[Any]] = {
    "event_id": _UUIDS,
    "key_id": _UUIDS,
    "event_type": st.sampled_from(EVENT_TYPES),
    "schema_version": st.one_of(st.just(1), st.integers(-1, 3)),
    "account_id": st.one_of(
        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", fullmatch=True),
        st.from_regex(r"[A-Za-z0-9_.\- \n]{0,66}", fullmatch=True),
    ),
    "stream_version": st.one_of(st.just(1), st.integers(min_value=-1, max_value=2**63 + 1)),
    "position": st.integers(min_value=-1, max_value=2**63 + 1),
    "occurred_at": st.one_of(
        _TIMES.map(lambda t: t.isoformat(timespec="microseconds").replace("+00:00", "Z")),
        _TIMES.map(lambda t: t.isoformat(timespec="milliseconds")),
        _TIMES.map(lambda t: t.replace(tzinfo=None).isoformat()),  # no zone: refused
        st.sampled_from(["2026-02-30T18:00:00Z", "2026-11-26T24:00:00Z", "2026-11-26T18:00:60Z"]),
    ),
    "actor": st.fixed_dictionaries(
        {"type": st.sampled_from(["user", "service", "system", "robot"]), "id": _TEXT},
        optional={
            "ip": st.one_of(
                st.none(), st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str)
            ),
            "user_agent": st.one_of(st.none(), st.text(max_size=505)),
        },
    ),
    "correlation_id": st.one_of(st.none(), _TEXT),
    "causation_id": st.one_of(st.none(), _TEXT),
}


@settings(max_examples=1500, deadline=None)
@given(
    st.fixed_dictionaries(
        {k: v for k, v in _CANONICAL_SHAPES.items() if k not in _OPTIONAL},
        optional={k: _CANONICAL_SHAPES[k] for k in _OPTIONAL},
    ),
    st.sampled_from(sorted(EXAMPLES)),
    st.sampled_from([None, *sorted(_CANONICAL_SHAPES)]),
)
def test_on_the_keys_services_shape_the_wire_struct_and_the_contract_give_the_same_verdict(
    event: dict[str, Any], data_of: str, missing: str | None
) -> None:
    """Each field in the form the keys service writes it (canonical uuids, UTC times,
    addresses as text), with any value of its type, the data of some event type, a field
    possibly missing: the fast path accepts exactly when the contract does (but for IPv6
    actors, which it leaves to the contract), and then reads the same entry."""
    event["data"] = EXAMPLES[data_of]["data"]
    event.pop(missing or "", None)
    raw = _dump(event)
    fast, contract = fast_entry(raw), contract_view(raw)
    ipv6 = ":" in str(event.get("actor", {}).get("ip"))
    if not ipv6:
        assert ("refused" if fast is None else fast) == contract
    elif fast is not None:
        assert fast == contract


def _event(**changes: Any) -> bytes:
    return orjson.dumps({**VALID, **changes})


def test_a_batch_reads_as_its_events_do_one_by_one() -> None:
    batch = [_event(event_id=f"6a1d8c52-1f0e-4a7e-9c55-5e2a4a0c7d{n:02x}") for n in range(50)] + [
        _event(occurred_at="2026-11-26T19:00:00.5+01:00"),
        b"{not json",
    ]
    decoded = decode_events(batch)
    assert decoded[:-1] == [decode_event(raw) for raw in batch[:-1]]
    assert decoded[-1] is None  # left to the event decoder, whose verdict stands


@pytest.mark.parametrize(
    "bad",
    [
        {"event_id": "6a1d8c52-1f0e-4a7e-9c55-5e2a4a0c7d11\n6a1d8c52-1f0e-4a7e-9c55-5e2a4a0c7d12"},
        {"event_id": "6A1D8C52-1F0E-4A7E-9C55-5E2A4A0C7D11"},
        {"occurred_at": "2026-11-26T18:00:00"},
        {"occurred_at": "2026-11-26T18:00:00Z\n2026-11-26T18:00:00Z"},
    ],
)
def test_one_odd_event_in_a_batch_is_judged_alone(bad: dict[str, Any]) -> None:
    """The batch-wide shape check fails; each event is then checked on its own."""
    batch = [_event(), _event(**bad), _event(event_id="6a1d8c52-1f0e-4a7e-9c55-5e2a4a0c7d12")]
    decoded = decode_events(batch)
    assert decoded[0] == decode_event(batch[0])
    assert decoded[1] is None
    assert decoded[2] == decode_event(batch[2])


def test_the_same_data_twice_is_read_alike() -> None:
    """The data of a type, validated once, is remembered: the second read is the same."""
    first, second = (
        fast_entry(_event(event_id=f"6a1d8c52-1f0e-4a7e-9c55-5e2a4a0c7d1{n}")) for n in (3, 4)
    )
    assert first is not None and second is not None
    assert (first.details, first.key_name) == (second.details, second.key_name)
    refused = orjson.dumps({**VALID, "event_type": "KeyRotated"})  # a reason is not a rotation
    assert fast_entry(refused) is None


def _contract_data(event_type: str, raw: bytes) -> tuple[str | None, str] | str:
    try:
        return event_data(DATA_MODELS[event_type].model_validate_json(raw))
    except ValidationError:
        return "refused"


_NAMES = st.one_of(
    st.text(max_size=102),
    st.sampled_from(["key", " key", "key ", "a" * 100, "a" * 101, "", 'q"\\/', "\u2028"]),
)


@settings(max_examples=1500, deadline=None)
@given(_NAMES, _NAMES, st.booleans())
def test_a_rename_reads_by_its_own_struct_as_the_contract_reads_it(
    before: str, after: str, ascii_only: bool
) -> None:
    """A KeyUpdated changing the name alone (the one data that neither repeats nor is
    cheap to validate): the rename struct accepts exactly what the contract accepts, and
    gives the same name and details (the text a record keeps and hashes)."""
    document = {"before": {"name": before}, "after": {"name": after}}
    raw = json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    fast = renamed(raw)
    assert ("refused" if fast is None else fast) == _contract_data("KeyUpdated", raw)


@pytest.mark.parametrize(
    "data",
    [
        {"before": {"name": "a"}, "after": {"name": "b"}, "x": 1},
        {"before": {"name": "a", "scopes": []}, "after": {"name": "b", "scopes": ["x"]}},
        {"before": {"name": "a"}, "after": {"description": "b"}},
        {"before": {"name": 1}, "after": {"name": "b"}},
        {"before": {}, "after": {}},
    ],
)
def test_other_updates_are_left_to_the_contract(data: dict[str, Any]) -> None:
    assert renamed(orjson.dumps(data)) is None
