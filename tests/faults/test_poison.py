"""Point 4: hypothesis-generated poison (invalid JSON, wrong types, oversize fields,
unknown types, unknown schema_version, invalid UTF-8) interleaved with valid messages on
every consumed topic. No service dies, every valid message takes effect, every invalid one
is in `<topic>.dlq` with its reason (a broken command with a readable command_id is
answered `rejected` on keys.command-results instead, as INTERFACE.md says)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import (
    DLQ_ERROR_HEADER,
    KEYS_COMMAND_RESULTS,
    KEYS_COMMANDS,
    KEYS_EVENTS,
    USAGE_ALERTS,
    USAGE_RECORDS,
    Alert,
    CommandResult,
    CreateKey,
    KeyAttributes,
    UsageRecord,
    dlq,
    extract_command_id,
    parse_command,
    parse_event,
)
from contracts.examples import example_alert, example_results, example_usage_record
from contracts.topics import DLQ_CONSUMER_GROUP_HEADER
from servicekit.kafka import KafkaProducer
from tests.faults.support import MARKS, generating, pids, report, scale
from tests.support.audit import key_stream
from tests.support.kafka import Record, TopicTail, header
from tests.support.keys_processes import CommandResults, issue
from tests.support.stack import Stack
from tests.support.wait import wait_until

pytestmark = MARKS
PER_TOPIC = scale(300, 10_000)
VALID_EVERY = 5  # one valid message among five
Json = dict[str, Any]


@dataclass(frozen=True)
class Topic:
    name: str
    groups: tuple[str, ...]
    """The consumer groups that read it, each dead-lettering on its own."""
    valid: Callable[[str], Json]
    """A fresh valid message (as JSON) for a throwaway account."""
    accepts: Callable[[bytes], object]
    """The contract's parser: raises when the message is invalid."""
    type_field: str | None = None


def _command(account: str) -> Json:
    return issue(CreateKey, account, KeyAttributes(name="poison neighbour")).model_dump(mode="json")


def _event(account: str) -> Json:
    (event,) = key_stream(account, keys=1, per_key=1).events
    return event.model_dump(mode="json")


def _result(account: str) -> Json:
    rejected = example_results()[1].model_copy(update={"command_id": uuid.uuid4()})
    return rejected.model_dump(mode="json")


def _record(account: str) -> Json:
    record = example_usage_record(key_id=uuid.uuid4(), account_id=account)
    fresh = record.model_copy(update={"record_id": uuid.uuid4(), "occurred_at": datetime.now(UTC)})
    return fresh.model_dump(mode="json")


def _alert(account: str) -> Json:
    alert = example_alert(key_id=uuid.uuid4(), account_id=account)
    return alert.model_copy(update={"alert_id": uuid.uuid4()}).model_dump(mode="json")


TOPICS = [
    Topic(KEYS_COMMANDS, ("keys",), _command, parse_command, "command_type"),
    Topic(KEYS_EVENTS, ("audit", "usage"), _event, parse_event, "event_type"),
    Topic(KEYS_COMMAND_RESULTS, ("audit",), _result, CommandResult.model_validate_json, "status"),
    Topic(USAGE_RECORDS, ("usage",), _record, UsageRecord.model_validate_json),
    Topic(USAGE_ALERTS, ("audit", "usage-webhooks"), _alert, Alert.model_validate_json, "kind"),
]


# --- the poison ---------------------------------------------------------------------------
def _dump(message: Json) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def poison(topic: Topic, account: str) -> st.SearchStrategy[bytes]:
    base = topic.valid(account)
    field = st.sampled_from(sorted(base))
    wrong = st.one_of(
        st.integers(), st.floats(), st.booleans(), st.none(), st.lists(st.integers(), max_size=3)
    )
    kinds = [
        st.binary(max_size=80).map(lambda b: b'{"' + b.replace(b'"', b"") + b'":'),  # JSON
        st.tuples(field, wrong).map(lambda fv: _dump({**base, fv[0]: fv[1]})),  # types
        st.integers(65, 5_000).map(lambda n: _dump({**base, "account_id": "A" * n})),
        st.tuples(field, st.binary(min_size=1, max_size=8)).map(  # not UTF-8
            lambda fb: _dump({**base, fb[0]: "@@"}).replace(b'"@@"', b'"' + b"\xff" + fb[1] + b'"')
        ),
        st.integers()
        .filter(lambda v: v != 1)
        .map(  # an unknown schema_version
            lambda v: _dump({**base, "schema_version": v})
        ),
    ]
    type_field = topic.type_field
    if type_field:
        kinds.append(st.text(max_size=30).map(lambda t: _dump({**base, type_field: t})))

    def refused(raw: bytes) -> bool:
        try:
            topic.accepts(raw)
        except (ValidationError, ValueError, UnicodeDecodeError):
            return True
        return False

    return st.one_of(kinds).filter(refused)


def generate(topic: Topic, account: str, count: int) -> list[bytes]:
    found: list[bytes] = []

    @generating(count)
    @given(poison(topic, account))
    def collect(raw: bytes) -> None:
        found.append(raw)

    collect()
    return found


# --- the scenario -------------------------------------------------------------------------
async def _took_effect(
    conns: dict[str, asyncpg.Connection], topic: Topic, valid: list[Json]
) -> list[str]:
    """The valid messages whose effect is not (yet) there."""
    if topic.name == KEYS_COMMANDS:
        found = await conns["keys"].fetch(
            "SELECT command_id FROM processed_commands WHERE command_id = ANY($1::uuid[])"
            " AND result->>'status' = 'accepted'",
            [m["command_id"] for m in valid],
        )
        return sorted({m["command_id"] for m in valid} - {str(r[0]) for r in found})
    if topic.name == USAGE_RECORDS:
        found = await conns["usage"].fetch(
            "SELECT record_id FROM seen_records WHERE record_id = ANY($1::uuid[])",
            [m["record_id"] for m in valid],
        )
        return sorted({m["record_id"] for m in valid} - {str(r[0]) for r in found})
    prefix, field = {
        KEYS_EVENTS: ("event", "event_id"),
        KEYS_COMMAND_RESULTS: ("result", "command_id"),
        USAGE_ALERTS: ("alert", "alert_id"),
    }[topic.name]
    wanted = {f"{prefix}:{m[field]}" for m in valid}
    found = await conns["audit"].fetch(
        "SELECT source_id FROM audit_records WHERE source_id = ANY($1::text[])", list(wanted)
    )
    missing = wanted - {r[0] for r in found}
    if topic.name == KEYS_EVENTS:  # usage, too, reads the keys' events
        known = await conns["usage"].fetch(
            "SELECT key_id FROM key_directory WHERE key_id = ANY($1::uuid[])",
            [m["key_id"] for m in valid],
        )
        missing |= {m["key_id"] for m in valid} - {str(r[0]) for r in known}
    return sorted(missing)


@pytest.mark.parametrize("topic", TOPICS, ids=[t.name for t in TOPICS])
async def test_poison_is_dead_lettered_and_every_valid_message_takes_effect(
    stack: Stack,
    producer: KafkaProducer,
    db: dict[str, asyncpg.Connection],
    topic: Topic,
) -> None:
    account = f"poison-{uuid.uuid4().hex[:10]}"
    bad = generate(topic, account, PER_TOPIC - PER_TOPIC // VALID_EVERY)
    valid = [topic.valid(account) for _ in range(PER_TOPIC // VALID_EVERY)]
    readable = (
        {i: cid for i, raw in enumerate(bad) if (cid := extract_command_id(raw)) is not None}
        if topic.name == KEYS_COMMANDS
        else {}
    )
    keys = [f"poison-{i}-{uuid.uuid4().hex[:8]}".encode() for i in range(len(bad))]
    messages: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []
    for i, raw in enumerate(bad):
        messages.append((keys[i], raw, []))
        if i % (VALID_EVERY - 1) == 0 and i // (VALID_EVERY - 1) < len(valid):
            message = valid[i // (VALID_EVERY - 1)]
            key = message.get("key_id") or message.get("command_id") or message["alert_id"]
            messages.append((str(key).encode(), _dump(message), []))
    before = pids()
    expected = {(k, g) for i, k in enumerate(keys) if i not in readable for g in topic.groups}

    def letters(records: list[Record]) -> dict[tuple[bytes, str], Record]:
        return {(r.key or b"", header(r, DLQ_CONSUMER_GROUP_HEADER) or ""): r for r in records}

    async with (
        TopicTail(stack.kafka, dlq(topic.name)) as dead,
        TopicTail(stack.kafka, KEYS_COMMAND_RESULTS) as results,
    ):
        await producer.send_many(topic.name, messages)
        got = letters(
            await dead.collect(lambda rs: expected <= set(letters(rs)), timeout=scale(90, 600))
        )
        # Each broken command with a readable command_id is answered (fails if one is not).
        await CommandResults(results).wait_for(list(readable.values()), timeout=60)
    reasons = [header(got[e], DLQ_ERROR_HEADER) for e in expected]
    assert all(reasons), "every dead letter says why"

    async def all_took_effect() -> bool:
        return not await _took_effect(db, topic, valid)

    await wait_until(
        all_took_effect,
        timeout=scale(60, 300),
        interval=0.5,
        what=f"every valid message on {topic.name} to take effect",
    )
    assert pids() == before, "no service process died"
    report(
        f"poison-{topic.name}",
        4,
        f"poison on {topic.name}",
        f"{len(bad)} invalid + {len(valid)} valid messages; dead-lettered {len(expected)}"
        f" (groups {', '.join(topic.groups)}), rejected with a result {len(readable)},"
        f" valid that took effect {len(valid)}/{len(valid)}; services died 0",
        invalid=len(bad),
        valid=len(valid),
        dead_lettered=len(expected),
        rejected=len(readable),
    )
    assert len(bad) > 0 and len(valid) > 0
