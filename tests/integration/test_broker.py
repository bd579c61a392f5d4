"""The real broker carries every contract type intact, and keeps what it acknowledged."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from contracts import (
    KEYS_COMMAND_RESULTS,
    KEYS_COMMANDS,
    KEYS_EVENTS,
    PRIMARY_TOPICS,
    USAGE_ALERTS,
    USAGE_LIMITS,
    USAGE_RECORDS,
    Alert,
    CommandResult,
    ContractModel,
    EventEnvelope,
    LimitState,
    UsageRecord,
    parse_command,
    parse_event,
)
from contracts.examples import all_examples
from servicekit.kafka import KafkaProducer
from tests.support.kafka import Record, TopicTail
from tests.support.stack import Stack

pytestmark = pytest.mark.stack


def _topic_and_key(message: ContractModel) -> tuple[str, bytes]:
    if isinstance(message, EventEnvelope):
        return KEYS_EVENTS, str(message.key_id).encode()
    if isinstance(message, CommandResult):
        return KEYS_COMMAND_RESULTS, str(message.command_id).encode()
    if isinstance(message, UsageRecord):
        return USAGE_RECORDS, str(message.key_id).encode()
    if isinstance(message, Alert):
        return USAGE_ALERTS, str(message.key_id).encode()
    if isinstance(message, LimitState):
        return USAGE_LIMITS, str(message.key_id).encode()
    return KEYS_COMMANDS, str(message.command_id).encode()  # type: ignore[attr-defined]


def _parse(topic: str, raw: bytes) -> ContractModel:
    parsers: dict[str, Callable[[bytes], ContractModel]] = {
        KEYS_EVENTS: parse_event,
        KEYS_COMMANDS: parse_command,
        KEYS_COMMAND_RESULTS: CommandResult.model_validate_json,
        USAGE_RECORDS: UsageRecord.model_validate_json,
        USAGE_ALERTS: Alert.model_validate_json,
        USAGE_LIMITS: LimitState.model_validate_json,
    }
    parsed: ContractModel = parsers[topic](raw)
    return parsed


async def test_every_contract_type_survives_a_trip_through_the_broker(
    stack: Stack, producer: KafkaProducer
) -> None:
    # A fresh account marks this run's messages; the services may read them too (they are valid).
    account = f"roundtrip-{uuid.uuid4().hex[:10]}"
    examples = all_examples(account_id=account)
    by_topic: dict[str, list[ContractModel]] = {}
    for message in examples:
        by_topic.setdefault(_topic_and_key(message)[0], []).append(message)
    assert set(by_topic) == set(PRIMARY_TOPICS), "the examples cover every topic"

    tails = {topic: TopicTail(stack.kafka, topic) for topic in by_topic}
    for tail in tails.values():
        await tail.__aenter__()
    try:
        for message in examples:
            topic, key = _topic_and_key(message)
            await producer.send(topic, message.model_dump_json().encode(), key=key)
        for topic, sent in by_topic.items():
            wanted = {m.model_dump_json() for m in sent}

            def arrived(records: list[Record], wanted: set[str] = wanted) -> bool:
                return wanted <= {r.value.decode() for r in records if r.value}

            records = await tails[topic].collect(arrived)
            received = [
                _parse(topic, r.value) for r in records if r.value and r.value.decode() in wanted
            ]
            assert sorted(m.model_dump_json() for m in received) == sorted(wanted)
            assert all(m in sent for m in received), f"{topic}: a message came back different"
    finally:
        for tail in tails.values():
            await tail.__aexit__(None, None, None)


async def test_an_acknowledged_message_survives_a_broker_restart(
    stack: Stack, producer: KafkaProducer
) -> None:
    if not stack.broker_restartable:
        pytest.skip("the broker is external to this test run; it cannot be restarted from here")
    record = next(m for m in all_examples() if isinstance(m, UsageRecord))
    payload = record.model_dump_json().encode()
    async with TopicTail(stack.kafka, USAGE_RECORDS) as tail:
        await producer.send(USAGE_RECORDS, payload, key=str(record.key_id).encode())
        await stack.restart_broker()
        survived = await tail.collect(lambda rs: any(r.value == payload for r in rs), timeout=60)
    assert (
        UsageRecord.model_validate_json(next(r.value for r in survived if r.value == payload))
        == record
    )
    # The project's producer reconnects by itself after the restart.
    await producer.send(USAGE_RECORDS, payload, key=str(record.key_id).encode())
