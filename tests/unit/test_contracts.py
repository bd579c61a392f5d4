"""Scenarios for the messages that cross service boundaries (the contracts package).

A service must be able to read back, byte for byte, whatever another service wrote;
and anything outside INTERFACE.md must be refused at the edge with a message that
names the problem.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, get_args
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from contracts import (
    ALL_TOPICS,
    COMMAND_TYPES,
    EVENT_TYPES,
    MAX_GRACE_PERIOD_SECONDS,
    PATCHABLE_FIELDS,
    PRIMARY_TOPICS,
    Actor,
    Alert,
    AlertKind,
    AlertWindow,
    Command,
    CommandEnvelope,
    CommandError,
    CommandResult,
    ContractModel,
    CreateKey,
    DisableKeyData,
    EnableKeyData,
    Event,
    EventEnvelope,
    KeyAttributes,
    KeyCreated,
    KeyCreatedData,
    KeyDisabledData,
    KeyEnabledData,
    KeyExpiredData,
    KeyGracePeriodEndedData,
    KeyPatch,
    KeyReportedLeakedData,
    KeyRevealedData,
    KeyRevokedData,
    KeyRotatedData,
    KeyUpdatedData,
    ReportLeakedKeyData,
    RevokeKeyData,
    RotateKeyData,
    Severity,
    TokenBudget,
    UpdateKey,
    UsageRecord,
    dlq,
    event_headers,
    examples,
    extract_command_id,
    parse_command,
    parse_event,
)
from contracts.base import TimeBound
from contracts.schema import json_schemas, main

# --- strategies: every value the contracts accept, in every shape they accept it ---

CHARS = st.characters(exclude_categories=("Cc", "Cs"))
OFFSETS = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=11))]
BIGINT = 2**63 - 1


def texts(min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(CHARS, min_size=min_size, max_size=max_size)


def pattern(regex: str) -> st.SearchStrategy[str]:
    return st.from_regex(regex, fullmatch=True)


uuids = st.uuids()
times = st.datetimes(
    datetime(1900, 1, 1), datetime(9999, 12, 30), timezones=st.sampled_from(OFFSETS)
)
usage_times = st.datetimes(  # a usage record's: from the epoch to before 9999
    datetime(1970, 1, 2), datetime(9998, 12, 30), timezones=st.sampled_from(OFFSETS)
)
account_ids = pattern(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
names = texts(1, 100).filter(lambda name: name.strip() == name != "")
descriptions = st.none() | st.text(CHARS | st.sampled_from("\n\t"), max_size=1000)
scopes = st.lists(pattern(r"[a-z][a-z0-9_-]{0,8}(:[a-z0-9_*-]{1,8}){1,3}"), max_size=8, unique=True)
rate_limits = st.none() | st.integers(1, 10**9)
prefixes = pattern(r"[a-z]{2,8}_[a-z0-9]{1,16}_[A-Za-z0-9]{4}")
reasons = texts(1, 500)
optional_text = st.none() | texts(1, 200)
actors = st.builds(
    Actor,
    type=st.sampled_from(["user", "service", "system"]),
    id=texts(1, 200),
    ip=st.none() | st.ip_addresses().map(str),
    user_agent=st.none() | texts(0, 500),
)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": names,
    "description": descriptions,
    "scopes": scopes,
    "rate_limit_per_hour": rate_limits,
    "expires_at": st.none() | times,
    "rate_limit_per_minute": rate_limits,
    "rate_limit_per_day": rate_limits,
    "token_budget": st.none()
    | st.builds(
        TokenBudget, tokens=st.integers(1, 2**53), period=st.sampled_from(["day", "month"])
    ),
    "allowed_cidrs": st.lists(
        st.tuples(st.ip_addresses(), st.integers(0, 128)).map(
            lambda a: str(ipaddress.ip_network((a[0], min(a[1], a[0].max_prefixlen)), strict=False))
        ),
        max_size=5,
        unique=True,
    ),
}
attributes = {field: FIELD_VALUES[field] for field in PATCHABLE_FIELDS} | {
    "environment": pattern(r"[a-z][a-z0-9-]{0,31}"),
    "canary": st.booleans(),
}
leak_sources = pattern(r"[a-z0-9][a-z0-9._-]{0,63}")
leak_urls = st.none() | texts(1, 2000)


@st.composite
def patches(draw: st.DrawFn) -> KeyPatch:
    fields = draw(st.sets(st.sampled_from(PATCHABLE_FIELDS), min_size=1))
    return KeyPatch(**{field: draw(FIELD_VALUES[field]) for field in fields})


@st.composite
def key_updates(draw: st.DrawFn) -> KeyUpdatedData:
    fields = draw(st.sets(st.sampled_from(PATCHABLE_FIELDS), min_size=1))
    before = {field: draw(FIELD_VALUES[field]) for field in fields}
    after = {
        field: draw(FIELD_VALUES[field].filter(differs_from(before[field]))) for field in fields
    }
    return KeyUpdatedData(before=before, after=after)


def differs_from(old: Any) -> Callable[[Any], bool]:
    return lambda new: bool(new != old)


@st.composite
def rotations(draw: st.DrawFn) -> KeyRotatedData:
    prefix = draw(prefixes)
    grace_end = draw(st.none() | times)
    return KeyRotatedData(
        prefix=prefix,
        previous_prefix=draw(prefixes.filter(lambda p: p != prefix)),
        grace_period_ends_at=grace_end,
        end_grace_when_quiet_seconds=None if grace_end is None else draw(quiet_seconds),
    )


quiet_seconds = st.none() | st.integers(1, MAX_GRACE_PERIOD_SECONDS)


@st.composite
def rotate_commands(draw: st.DrawFn) -> RotateKeyData:
    grace = draw(st.integers(0, MAX_GRACE_PERIOD_SECONDS))
    quiet = None if grace == 0 else draw(quiet_seconds)
    return RotateKeyData(grace_period_seconds=grace, end_grace_when_quiet_seconds=quiet)


EVENT_DATA: dict[str, st.SearchStrategy[ContractModel]] = {
    "KeyCreated": st.builds(KeyCreatedData, prefix=prefixes, **attributes),
    "KeyUpdated": key_updates(),
    "KeyDisabled": st.builds(KeyDisabledData, reason=reasons),
    "KeyEnabled": st.builds(KeyEnabledData, reason=st.none() | reasons),
    "KeyRotated": rotations(),
    "KeyRevealed": st.just(KeyRevealedData()),
    "KeyRevoked": st.builds(KeyRevokedData, reason=st.none() | reasons),
    "KeyExpired": st.builds(KeyExpiredData, expires_at=times),
    "KeyReportedLeaked": st.builds(
        KeyReportedLeakedData,
        source=leak_sources,
        url=leak_urls,
        action=st.sampled_from(["quarantined", "revoked", "none"]),
    ),
    "KeyGracePeriodEnded": st.builds(
        KeyGracePeriodEndedData,
        reason=st.just("old_secret_quiet"),
        ended_at=times,
        last_used_at=st.none() | times,
        quiet_seconds=st.integers(1, MAX_GRACE_PERIOD_SECONDS),
        previous_prefix=prefixes,
        grace_period_ends_at=times,
    ),
}
COMMAND_DATA: dict[str, st.SearchStrategy[ContractModel]] = {
    "CreateKey": st.builds(KeyAttributes, **attributes),
    "UpdateKey": patches(),
    "DisableKey": st.builds(DisableKeyData, reason=reasons),
    "EnableKey": st.builds(EnableKeyData, reason=st.none() | reasons),
    "RotateKey": rotate_commands(),
    "RevokeKey": st.builds(RevokeKeyData, reason=st.none() | reasons),
    "ReportLeakedKey": st.builds(ReportLeakedKeyData, source=leak_sources, url=leak_urls),
}


def union_members(union: Any, tag: str) -> dict[str, Any]:
    """The classes of a discriminated union, by the value of their tag field."""
    members: tuple[type[BaseModel], ...] = get_args(get_args(union)[0])
    return {cls.model_fields[tag].default: cls for cls in members}


def events(event_type: str) -> st.SearchStrategy[EventEnvelope]:
    return st.builds(
        union_members(Event, "event_type")[event_type],
        event_id=uuids,
        key_id=uuids,
        account_id=account_ids,
        stream_version=st.just(1) if event_type == "KeyCreated" else st.integers(1, BIGINT),
        position=st.integers(1, BIGINT),
        occurred_at=times,
        actor=actors,
        correlation_id=optional_text,
        causation_id=optional_text,
        data=EVENT_DATA[event_type],
    )


def commands(command_type: str) -> st.SearchStrategy[CommandEnvelope]:
    return st.builds(
        union_members(Command, "command_type")[command_type],
        command_id=uuids,
        account_id=account_ids,
        key_id=(st.none() | uuids) if command_type == "CreateKey" else uuids,
        actor=actors,
        issued_at=times,
        correlation_id=optional_text,
        data=COMMAND_DATA[command_type],
    )


@st.composite
def command_results(draw: st.DrawFn) -> CommandResult:
    if draw(st.booleans()):
        return CommandResult(
            command_id=draw(uuids),
            status="accepted",
            key_id=draw(st.none() | uuids),
            event_ids=draw(st.lists(uuids, max_size=3)),
            prefix=draw(st.none() | prefixes),
        )
    error = CommandError(code=draw(pattern(r"[a-z][a-z0-9_]{0,63}")), message=draw(texts(1)))
    return CommandResult(command_id=draw(uuids), status="rejected", error=error)


usage_records = st.builds(
    UsageRecord,
    record_id=uuids,
    key_id=uuids,
    account_id=account_ids,
    occurred_at=usage_times,
    source_ip=st.ip_addresses().map(str),
    user_agent=st.none() | texts(0, 500),
    endpoint=texts(1, 200),
    model=st.none() | texts(0, 100),
    status_code=st.integers(100, 599),
    tokens_in=st.integers(0, 2**53),
    tokens_out=st.integers(0, 2**53),
    latency_ms=st.floats(min_value=0, allow_nan=False, allow_infinity=False),
)
numbers = st.integers() | st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | texts(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts(), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def alerts(draw: st.DrawFn) -> Alert:
    start, end = sorted([draw(times), draw(times)])
    return Alert(
        alert_id=draw(uuids),
        key_id=draw(uuids),
        account_id=draw(account_ids),
        kind=draw(st.sampled_from(get_args(AlertKind))),
        severity=draw(st.sampled_from(get_args(Severity))),
        detected_at=draw(times),
        window=AlertWindow(from_=start, to=end),
        observed=draw(numbers),
        expected=draw(numbers),
        evidence=draw(st.dictionaries(texts(), json_values, max_size=4)),
        summary=draw(texts(1, 500)),
    )


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")
EXACT_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")

EVENT_ID, KEY_ID, COMMAND_ID = uuid4(), uuid4(), uuid4()
INTERFACE_EVENT = f"""
{{"event_id": "{EVENT_ID}", "event_type": "KeyCreated", "schema_version": 1,
 "key_id": "{KEY_ID}", "account_id": "demo",
 "stream_version": 1, "position": 42, "occurred_at": "2026-11-26T18:00:00.123456Z",
 "actor": {{"type": "user", "id": "alice", "ip": null, "user_agent": null}},
 "correlation_id": "req-1", "causation_id": "{COMMAND_ID}",
 "data": {{"name": "CI", "description": null, "environment": "production", "scopes": [],
          "rate_limit_per_hour": null, "expires_at": null, "prefix": "ig_live_Ab3d"}}}}"""
INTERFACE_COMMAND = f"""
{{"command_id": "{COMMAND_ID}", "command_type": "DisableKey", "account_id": "demo",
 "key_id": "{KEY_ID}", "actor": {{"type": "service", "id": "billing", "ip": null,
 "user_agent": null}}, "issued_at": "2026-11-26T18:00:00.123456Z", "correlation_id": null,
 "data": {{"reason": "invoice unpaid"}}}}"""
INTERFACE_RESULT = f"""
{{"command_id": "{COMMAND_ID}", "status": "rejected", "key_id": "{KEY_ID}",
 "event_ids": [], "error": {{"code": "not_found", "message": "no such key"}}}}"""
INTERFACE_USAGE = f"""
{{"record_id": "{uuid4()}", "key_id": "{KEY_ID}", "account_id": "demo",
 "occurred_at": "2026-11-26T18:00:00.123456Z", "source_ip": "203.0.113.7",
 "user_agent": "curl/8", "endpoint": "/v1/generate", "model": "instagen-xl",
 "status_code": 200, "tokens_in": 120, "tokens_out": 800, "latency_ms": 412.5}}"""
INTERFACE_ALERT = f"""
{{"alert_id": "{uuid4()}", "key_id": "{KEY_ID}", "account_id": "demo", "kind": "volume_spike",
 "severity": "warning", "detected_at": "2026-11-26T18:00:00.123456Z",
 "window": {{"from": "2026-11-26T17:00:00Z", "to": "2026-11-26T18:00:00Z"}},
 "observed": 5400, "expected": 310, "evidence": {{}},
 "summary": "one sentence a person can act on"}}"""


def assert_exact_round_trip(message: BaseModel, parse: Callable[[str], BaseModel]) -> None:
    wire = message.model_dump_json()
    again = parse(wire)
    assert type(again) is type(message)
    assert again == message
    assert again.model_dump_json() == wire


@pytest.mark.parametrize("event_type", EVENT_TYPES)
@SETTINGS
@given(data=st.data())
def test_every_event_type_survives_a_trip_through_kafka_unchanged(
    event_type: str, data: st.DataObject
) -> None:
    event = data.draw(events(event_type))
    assert event.event_type == event_type
    assert_exact_round_trip(event, parse_event)


@pytest.mark.parametrize("command_type", COMMAND_TYPES)
@SETTINGS
@given(data=st.data())
def test_every_command_type_survives_a_trip_through_kafka_unchanged(
    command_type: str, data: st.DataObject
) -> None:
    command = data.draw(commands(command_type))
    assert command.command_type == command_type
    assert_exact_round_trip(command, parse_command)
    # Equality ignores which patch fields were *given*; the wire must not.
    assert parse_command(command.model_dump_json()).data.model_fields_set == (
        command.data.model_fields_set
    )


@SETTINGS
@given(record=usage_records, alert=alerts(), result=command_results())
def test_usage_records_alerts_and_results_survive_a_round_trip(
    record: UsageRecord, alert: Alert, result: CommandResult
) -> None:
    assert_exact_round_trip(record, UsageRecord.model_validate_json)
    assert_exact_round_trip(alert, Alert.model_validate_json)
    assert_exact_round_trip(result, CommandResult.model_validate_json)


@pytest.mark.parametrize(
    ("raw", "parse"),
    [
        (INTERFACE_EVENT, parse_event),
        (INTERFACE_COMMAND, parse_command),
        (INTERFACE_RESULT, CommandResult.model_validate_json),
        (INTERFACE_USAGE, UsageRecord.model_validate_json),
        (INTERFACE_ALERT, Alert.model_validate_json),
    ],
    ids=["event", "command", "result", "usage-record", "alert"],
)
def test_the_examples_of_interface_md_are_valid_messages(
    raw: str, parse: Callable[[str], BaseModel]
) -> None:
    written = json.loads(parse(raw).model_dump_json())
    assert_kept(json.loads(raw), written)


def assert_kept(original: Any, written: Any) -> None:
    """Every value of the original is written back, times in their one canonical form."""
    if isinstance(original, dict):
        for field, value in original.items():
            assert_kept(value, written[field])
    elif isinstance(original, str) and ISO_TIME.fullmatch(original):
        assert datetime.fromisoformat(written) == datetime.fromisoformat(original)
    else:
        assert written == original


def test_a_key_event_from_interface_md_reads_as_typed_values() -> None:
    event = parse_event(INTERFACE_EVENT)
    assert isinstance(event, KeyCreated)
    assert (event.event_id, event.key_id, event.position) == (EVENT_ID, KEY_ID, 42)
    assert event.occurred_at == datetime(2026, 11, 26, 18, 0, 0, 123456, tzinfo=UTC)
    alert = Alert.model_validate_json(INTERFACE_ALERT)
    assert alert.window.from_ == datetime(2026, 11, 26, 17, tzinfo=UTC)
    assert isinstance(alert.observed, int)


@pytest.mark.parametrize(
    "naive", ["2026-11-26T18:00:00.123456", datetime(2026, 11, 26, 18)], ids=["text", "python"]
)
def test_a_time_without_timezone_is_refused(naive: object) -> None:
    with pytest.raises(ValidationError, match="no timezone"):
        AlertWindow(from_=naive, to=datetime(2026, 11, 27, tzinfo=UTC))


@pytest.mark.parametrize("number", ["1764180000", '"1764180000"', '"0.5"', '" 1e9 "'])
def test_a_number_is_not_read_as_a_timestamp(number: str) -> None:
    with pytest.raises(ValidationError, match="ISO-8601"):
        AlertWindow.model_validate_json(f'{{"from": {number}, "to": "2026-11-27T00:00:00Z"}}')


@pytest.mark.parametrize(
    ("text", "held"),
    [
        ("0001-01-01T00:00:00+01:00", datetime.min.replace(tzinfo=UTC)),
        ("9999-12-31T23:59:59-23:59", datetime.max.replace(tzinfo=UTC)),
        ("2026-11-26T19:00:00+01:00", datetime(2026, 11, 26, 18, tzinfo=UTC)),
    ],
)
def test_a_window_bound_beyond_the_times_there_are_is_the_first_or_last(
    text: str, held: datetime
) -> None:
    assert TypeAdapter(TimeBound).validate_python(text) == held
    with pytest.raises(ValidationError):
        TypeAdapter(TimeBound).validate_python("2026-11-26T19:00:00")  # still: a timezone


def test_times_are_stored_in_utc_and_written_with_six_digits_and_z() -> None:
    window = AlertWindow.model_validate_json(
        '{"from": "2026-11-26T19:00:00+01:00", "to": "2026-11-26T18:00:00.5Z"}'
    )
    assert window.from_.utcoffset() == timedelta(0)
    assert window.model_dump_json() == (
        '{"from":"2026-11-26T18:00:00.000000Z","to":"2026-11-26T18:00:00.500000Z"}'
    )


def test_every_time_in_every_example_is_written_the_same_way() -> None:
    wire = "".join(message.model_dump_json() for message in examples.all_examples())
    stamps = [match.group(0) for match in ISO_TIME.finditer(wire)]
    assert len(stamps) > 20
    assert all(EXACT_UTC.fullmatch(stamp) for stamp in stamps), stamps


@pytest.mark.parametrize(
    ("path", "field"),
    [((), "colour"), (("data",), "secret"), (("actor",), "role")],
    ids=["envelope", "data", "actor"],
)
def test_an_unknown_field_is_refused_by_name(path: tuple[str, ...], field: str) -> None:
    document = json.loads(INTERFACE_EVENT)
    target = document
    for step in path:
        target = target[step]
    target[field] = "x"
    with pytest.raises(ValidationError, match=f"{field}\\n.*Extra inputs are not permitted"):
        parse_event(json.dumps(document))


@pytest.mark.parametrize(
    ("raw", "parse", "field", "bad", "message"),
    [
        (INTERFACE_EVENT, parse_event, "event_type", "KeyStolen", "Input tag 'KeyStolen' found"),
        (INTERFACE_EVENT, parse_event, "schema_version", 2, "schema_version 2 is not supported"),
        (INTERFACE_EVENT, parse_event, "schema_version", "1", "schema_version '1' is not"),
        (INTERFACE_COMMAND, parse_command, "command_type", "Drop", "Input tag 'Drop' found"),
    ],
)
def test_an_unknown_type_or_version_is_refused_naming_the_value(
    raw: str, parse: Callable[[str], BaseModel], field: str, bad: object, message: str
) -> None:
    document = json.loads(raw) | {field: bad}
    with pytest.raises(ValidationError, match=message):
        parse(json.dumps(document))


@pytest.mark.parametrize(
    ("union", "tag", "names"),
    [(Event, "event_type", EVENT_TYPES), (Command, "command_type", COMMAND_TYPES)],
)
def test_the_published_type_names_are_exactly_the_union_members(
    union: Any, tag: str, names: tuple[str, ...]
) -> None:
    assert tuple(union_members(union, tag)) == names


def test_a_message_cannot_be_changed_after_it_is_built() -> None:
    event = parse_event(INTERFACE_EVENT)
    assert isinstance(event, KeyCreated)
    with pytest.raises(ValidationError, match="frozen"):
        event.position = 43  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        event.data.name = "renamed"  # type: ignore[misc]


def test_the_command_id_of_a_broken_command_can_still_be_read() -> None:
    broken = json.loads(INTERFACE_COMMAND) | {"command_type": "Nonsense", "key_id": 7}
    raw = json.dumps(broken).encode()
    with pytest.raises(ValidationError):
        parse_command(raw)
    assert extract_command_id(raw) == COMMAND_ID


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00{",
        b'["command_id"]',
        b'{"command_id": 42}',
        b'{"command_id": "not-a-uuid"}',
        b'{"command": {"command_id": "6f1c5a5e-8a56-4b3e-9a53-0e5b9b1f0c11"}}',
        '{"command_id": "6f1c5a5e-8a56-4b3e-9a53-0e5b9b1f0c11", "x": "\xe9"}'.encode("latin-1"),
        b"[" * 100_000,
    ],
    ids=["empty", "text", "utf16", "array", "int", "bad-uuid", "nested", "latin1", "deep"],
)
def test_no_command_id_is_invented_for_garbage(raw: bytes) -> None:
    assert extract_command_id(raw) is None


def test_a_command_other_than_create_needs_a_key_id() -> None:
    document = json.loads(INTERFACE_COMMAND) | {"key_id": None}
    with pytest.raises(ValidationError, match="DisableKey needs a key_id"):
        parse_command(json.dumps(document))
    create = examples.example_commands()[0]
    assert isinstance(create, CreateKey)
    assert create.key_id is None


def test_a_patch_leaves_absent_fields_alone_and_clears_null_ones() -> None:
    patch = KeyPatch.model_validate_json('{"name": "renamed", "expires_at": null}')
    assert json.loads(patch.model_dump_json()) == {"name": "renamed", "expires_at": None}
    assert KeyPatch.model_validate_json(patch.model_dump_json()).model_fields_set == {
        "name",
        "expires_at",
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{}", "at least one"),
        ('{"name": null}', "name cannot be null"),
        ('{"scopes": null}', "scopes cannot be null"),
        ('{"status": "active"}', "Extra inputs"),
    ],
)
def test_a_patch_must_change_something_it_may_change(body: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KeyPatch.model_validate_json(body)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "x", "environment": "staging"}, "cannot change: environment"),
        ({"name": "same"}, "not changed: name"),
        ({}, "at least one field"),
    ],
)
def test_a_key_updated_event_lists_only_real_changes(changes: dict[str, Any], message: str) -> None:
    before = dict.fromkeys(changes, "same")
    with pytest.raises(ValidationError, match=message):
        KeyUpdatedData(before=before, after=changes)


def test_a_key_updated_event_shows_both_sides_of_each_change() -> None:
    with pytest.raises(ValidationError, match="same fields"):
        KeyUpdatedData(before={"name": "a"}, after={"name": "b", "description": "d"})


def test_a_changed_expiry_reads_back_as_a_utc_time() -> None:
    data = KeyUpdatedData.model_validate_json(
        '{"before": {"expires_at": null}, "after": {"expires_at": "2027-01-01T01:00:00+01:00"}}'
    )
    assert data.after["expires_at"] == datetime(2027, 1, 1, tzinfo=UTC)
    assert '"2027-01-01T00:00:00.000000Z"' in data.model_dump_json()
    assert set(PATCHABLE_FIELDS) == set(KeyPatch.model_fields)


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"name": "   "}, "visible character"),
        ({"name": " padded"}, "whitespace"),
        ({"name": "bell\x07"}, "control characters"),
        ({"name": "x" * 101}, "at most 100"),
        ({"description": "a\x00b"}, "control characters"),
        ({"scopes": ["keys:manage", "keys:manage"]}, "repeated: keys:manage"),
        ({"scopes": ["Keys:Manage"]}, "pattern"),
        ({"scopes": [f"s:{i}" for i in range(51)]}, "at most 50"),
        ({"environment": "Prod"}, "pattern"),
        ({"rate_limit_per_hour": 0}, "greater than or equal to 1"),
        ({"canary": "yes"}, "valid boolean"),
    ],
)
def test_key_attributes_outside_the_limits_are_refused(
    attributes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        KeyAttributes.model_validate({"name": "ok"} | attributes)


def test_a_key_created_event_always_starts_its_stream() -> None:
    document = json.loads(INTERFACE_EVENT) | {"stream_version": 2}
    with pytest.raises(ValidationError, match="stream_version must be 1"):
        parse_event(json.dumps(document))


def test_an_event_carries_its_type_id_and_version_as_kafka_headers() -> None:
    event = parse_event(INTERFACE_EVENT)
    assert event_headers(event) == [
        ("event_type", b"KeyCreated"),
        ("event_id", str(EVENT_ID).encode()),
        ("schema_version", b"1"),
    ]


@pytest.mark.parametrize(
    ("status", "error", "event_ids", "message"),
    [
        ("rejected", None, [], "carries an error"),
        ("rejected", {"code": "conflict", "message": "stale"}, [uuid4()], "no event_ids"),
        ("accepted", {"code": "conflict", "message": "stale"}, [], "carries no error"),
    ],
)
def test_a_command_result_is_either_accepted_or_rejected_with_an_error(
    status: str, error: dict[str, str] | None, event_ids: list[UUID], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        CommandResult.model_validate(
            {"command_id": uuid4(), "status": status, "error": error, "event_ids": event_ids}
        )


def test_a_long_rejection_message_is_shortened_not_refused() -> None:
    result = CommandResult.rejected(uuid4(), "invalid_command", "x" * 10_000)
    assert result.error is not None
    assert len(result.error.message) == 2000


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("source_ip", "203.0.113.300"),
        ("status_code", 600),
        ("tokens_in", -1),
        ("latency_ms", math.inf),
        ("latency_ms", math.nan),
        ("endpoint", "/v1/\x00"),
    ],
)
def test_a_usage_record_with_an_impossible_value_is_refused(field: str, value: object) -> None:
    document = json.loads(INTERFACE_USAGE) | {field: value}
    with pytest.raises(ValidationError, match=field):
        UsageRecord.model_validate(document)


def test_an_ipv4_client_seen_over_ipv6_is_the_same_client() -> None:
    assert Actor(type="user", id="a", ip="::ffff:203.0.113.7").ip == "203.0.113.7"
    assert Actor(type="user", id="a", ip="2001:DB8::0001").ip == "2001:db8::1"
    with pytest.raises(ValidationError, match="not an IPv4 or IPv6 address"):
        Actor(type="user", id="a", ip="localhost")


def test_an_alert_window_uses_from_on_the_wire_and_must_not_run_backwards() -> None:
    start = datetime(2026, 11, 26, tzinfo=UTC)
    window = AlertWindow(from_=start, to=start)
    assert json.loads(window.model_dump_json()).keys() == {"from", "to"}
    with pytest.raises(ValidationError, match="ends before it starts"):
        AlertWindow(from_=start, to=start - timedelta(seconds=1))


def test_alert_evidence_holds_only_json_values() -> None:
    alert = examples.example_alert()
    document = alert.model_dump() | {"evidence": {"seen": datetime.now(UTC)}}
    with pytest.raises(ValidationError, match="evidence"):
        Alert.model_validate(document)


def test_the_examples_hold_one_of_every_message_with_fresh_ids() -> None:
    first, second = examples.all_examples(), examples.all_examples()
    names = {type(message).__name__ for message in first}
    assert (
        set(EVENT_TYPES) | set(COMMAND_TYPES) | {"CommandResult", "UsageRecord", "Alert"} <= names
    )
    statuses = {m.status for m in first if isinstance(m, CommandResult)}
    assert statuses == {"accepted", "rejected"}
    events = examples.example_events(first_position=10)
    assert [e.stream_version for e in events] == list(range(1, len(EVENT_TYPES) + 1))
    assert [e.position for e in events] == list(range(10, 10 + len(EVENT_TYPES)))
    ids = {json.loads(m.model_dump_json()).get("command_id") for m in first + second}
    assert len(ids - {None}) == 2 * (len(COMMAND_TYPES) + 2)
    assert all(isinstance(m, ContractModel) for m in first)


def test_the_topics_and_their_dead_letter_topics() -> None:
    assert dlq("keys.commands") == "keys.commands.dlq"
    assert set(ALL_TOPICS) == set(PRIMARY_TOPICS) | {f"{t}.dlq" for t in PRIMARY_TOPICS}
    assert len(ALL_TOPICS) == 12


def test_json_schemas_describe_every_topic_and_are_written_as_json(tmp_path: Path) -> None:
    schemas = json_schemas()
    assert set(schemas) == set(PRIMARY_TOPICS)
    event_schema = schemas["keys.events"]
    assert event_schema["discriminator"]["propertyName"] == "event_type"
    assert set(event_schema["discriminator"]["mapping"]) == set(EVENT_TYPES)
    created = event_schema["$defs"]["KeyCreated"]
    assert "event_type" in created["required"]
    assert created["properties"]["actor"]  # field descriptions reach the schema
    assert "from" in schemas["usage.alerts"]["$defs"]["AlertWindow"]["properties"]
    # What a producer writes (serialization schema, used for AsyncAPI) names the patch fields.
    written_patch = json.dumps(UpdateKey.model_json_schema(mode="serialization"))
    assert '"rate_limit_per_hour"' in written_patch
    assert main([str(tmp_path / "out")]) == 0
    for topic in PRIMARY_TOPICS:
        written = json.loads((tmp_path / "out" / f"{topic}.schema.json").read_text())
        assert written == json.loads(json.dumps(schemas[topic]))
        assert written["$schema"].startswith("https://json-schema.org/")


def test_a_time_far_from_utc_is_converted_not_shifted() -> None:
    kolkata = timezone(timedelta(hours=5, minutes=30))
    local = datetime(2026, 11, 26, 23, 30, tzinfo=kolkata)
    record = UsageRecord.model_validate(
        examples.example_usage_record().model_dump() | {"occurred_at": local}
    )
    assert record.occurred_at == local
    assert record.occurred_at.tzinfo is UTC
    assert '"occurred_at":"2026-11-26T18:00:00.000000Z"' in record.model_dump_json()


def test_a_rejection_quoting_a_nul_from_the_refused_input_is_still_a_valid_result() -> None:
    """A command whose command_type holds a NUL is answered, not stuck on its partition."""
    result = CommandResult.rejected(uuid4(), "invalid_command", "unknown command_type 'a\x00b'")
    assert result.error is not None and "\x00" not in result.error.message
    assert CommandResult.model_validate_json(result.model_dump_json()) == result


def test_a_key_is_no_canary_unless_created_as_one() -> None:
    assert KeyAttributes(name="ok").canary is False
    assert KeyAttributes.model_validate({"name": "decoy", "canary": True}).canary is True
    assert "canary" not in KeyPatch.model_fields  # set at creation only


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"source": "GitHub"}, "pattern"),
        ({"source": ""}, "pattern"),
        ({"source": "github", "url": ""}, "at least 1"),
        ({"source": "github", "token": "ig_live_x"}, "Extra inputs"),
    ],
)
def test_a_leak_report_names_its_source_and_never_carries_a_secret(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ReportLeakedKeyData.model_validate(data)


def test_a_leak_report_event_says_what_it_did() -> None:
    with pytest.raises(ValidationError, match="quarantined"):
        KeyReportedLeakedData.model_validate({"source": "github", "action": "deleted"})
