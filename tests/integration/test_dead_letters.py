"""A message that is not a valid contract goes to `<topic>.dlq` with the reason and where it
came from; the service keeps consuming and the next valid message takes effect."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from contracts import (
    DLQ_ERROR_HEADER,
    DLQ_SOURCE_OFFSET_HEADER,
    DLQ_SOURCE_PARTITION_HEADER,
    DLQ_SOURCE_TOPIC_HEADER,
    INVALID_COMMAND,
    KEYS_COMMAND_RESULTS,
    KEYS_COMMANDS,
    KEYS_EVENTS,
    USAGE_ALERTS,
    USAGE_LIMITS,
    USAGE_RECORDS,
    Alert,
    CommandResult,
    ContractModel,
    LimitState,
    dlq,
    format_utc,
)
from contracts.examples import (
    example_alert,
    example_commands,
    example_events,
    example_limit_state,
    example_results,
    example_usage_record,
)
from contracts.topics import DLQ_CONSUMER_GROUP_HEADER
from servicekit.kafka import KafkaProducer
from services.keys.entrypoints.last_use import GROUP_ID as LAST_USE_GROUP
from tests.support.kafka import TopicTail, committed_offset, header
from tests.support.stack import Stack
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack


def _valid(topic: str) -> ContractModel:
    account = f"dlq-{uuid.uuid4().hex[:8]}"
    examples: dict[str, Any] = {
        KEYS_COMMANDS: lambda: example_commands(account_id=account)[1],
        KEYS_EVENTS: lambda: example_events(account_id=account)[0],
        KEYS_COMMAND_RESULTS: lambda: example_results()[1],  # rejected: audited
        USAGE_RECORDS: lambda: example_usage_record(account_id=account),
        USAGE_ALERTS: lambda: example_alert(account_id=account),
        USAGE_LIMITS: lambda: example_limit_state(account_id=account),  # limited: audited
    }
    message: ContractModel = examples[topic]()
    return message


def _source_id(message: ContractModel) -> str:
    """The source id of the audit record `message` makes."""
    if isinstance(message, CommandResult):
        return f"result:{message.command_id}"
    if isinstance(message, Alert):
        return f"alert:{message.alert_id}"
    if isinstance(message, LimitState):
        return f"limit:{message.key_id}:{message.limit_name}:{format_utc(message.until)}"  # type: ignore[arg-type]
    return f"event:{message.event_id}"  # type: ignore[attr-defined]


LIMITS_GROUP = "usage-limits"
"""The usage service's limit counter (USAGE_LIMITS_CONSUMER_GROUP)."""
WEBHOOKS_GROUP = "usage-webhooks"
"""The usage service's webhook deliveries (USAGE_WEBHOOKS_CONSUMER_GROUP)."""
# (topic, the service that consumes it under that consumer group)
CONSUMERS = [
    (KEYS_COMMANDS, "keys"),
    (KEYS_EVENTS, "audit"),
    (KEYS_EVENTS, "usage"),
    (KEYS_COMMAND_RESULTS, "audit"),
    (USAGE_RECORDS, "usage"),
    (USAGE_RECORDS, LAST_USE_GROUP),
    (USAGE_RECORDS, LIMITS_GROUP),
    (USAGE_ALERTS, "audit"),
    (USAGE_ALERTS, WEBHOOKS_GROUP),
    (USAGE_LIMITS, "audit"),
]


@pytest.mark.parametrize(("topic", "service"), CONSUMERS, ids=[f"{t}->{s}" for t, s in CONSUMERS])
async def test_a_malformed_message_is_dead_lettered_and_consumption_goes_on(
    stack: Stack,
    producer: KafkaProducer,
    db: dict[str, asyncpg.Connection],
    topic: str,
    service: str,
) -> None:
    poison = b'{"this is": not json ' + uuid.uuid4().hex.encode()
    async with TopicTail(stack.kafka, dlq(topic)) as dead:
        written = await producer.send(topic, poison, key=b"poison")
        records = await dead.collect(
            lambda rs: any(
                r.value == poison and header(r, DLQ_CONSUMER_GROUP_HEADER) == service for r in rs
            )
        )
    letter = next(
        r for r in records if r.value == poison and header(r, DLQ_CONSUMER_GROUP_HEADER) == service
    )
    assert header(letter, DLQ_SOURCE_TOPIC_HEADER) == topic
    assert header(letter, DLQ_SOURCE_PARTITION_HEADER) == str(written.partition)
    assert header(letter, DLQ_SOURCE_OFFSET_HEADER) == str(written.offset)
    error = header(letter, DLQ_ERROR_HEADER) or ""
    assert "json" in error.lower(), error
    assert letter.key == b"poison"

    message = _valid(topic)
    if topic == KEYS_COMMANDS:  # the key service answers every valid command on its results topic
        command_id = str(message.command_id).encode()  # type: ignore[attr-defined]
        async with TopicTail(stack.kafka, KEYS_COMMAND_RESULTS) as results:
            await producer.send(topic, message.model_dump_json().encode(), key=command_id)
            await results.collect(lambda rs: any(r.key == command_id for r in rs))
        return
    valid = await producer.send(topic, message.model_dump_json().encode(), key=b"valid")

    async def took_effect() -> bool:
        if service in (LAST_USE_GROUP, WEBHOOKS_GROUP):  # of nobody's: read past, no effect
            next_offset = await committed_offset(stack.kafka, service, topic, valid.partition)
            return next_offset is not None and next_offset > valid.offset
        if service == "audit":  # one audit record per source message, by its source id
            found = await db[service].fetchval(
                "SELECT count(*) FROM audit_records WHERE source_id = $1", _source_id(message)
            )
            return bool(found)
        if service == LIMITS_GROUP:  # the limit counter stores its positions with its counts
            found = await db["usage"].fetchval(
                "SELECT next_offset FROM limit_offsets WHERE topic = $1 AND partition = $2",
                topic,
                valid.partition,
            )
            return found is not None and found > valid.offset
        if topic == USAGE_RECORDS:  # usage counts records by record_id, not by offset
            found = await db[service].fetchval(
                "SELECT count(*) FROM seen_records WHERE record_id = $1",
                message.record_id,  # type: ignore[attr-defined]
            )
            return bool(found)
        found = await db[service].fetchval(
            "SELECT count(*) FROM consumed_messages"
            ' WHERE topic = $1 AND partition = $2 AND "offset" = $3',
            topic,
            valid.partition,
            valid.offset,
        )
        return bool(found)

    await wait_until(took_effect, what=f"{service} to take effect of the valid message on {topic}")


async def test_a_broken_command_with_a_readable_id_is_rejected_not_dead_lettered(
    stack: Stack, producer: KafkaProducer
) -> None:
    command_id = uuid.uuid4()
    broken = (
        f'{{"command_id": "{command_id}", "command_type": "DisableKey", "account_id": 42}}'.encode()
    )
    async with TopicTail(stack.kafka, KEYS_COMMAND_RESULTS) as results:
        await producer.send(KEYS_COMMANDS, broken, key=str(command_id).encode())
        records = await results.collect(
            lambda rs: any(r.key == str(command_id).encode() for r in rs)
        )
    result = CommandResult.model_validate_json(
        next(r.value for r in records if r.key == str(command_id).encode())
    )
    assert result.status == "rejected"
    assert result.error is not None and result.error.code == INVALID_COMMAND
    assert result.command_id == command_id
