"""Kafka entrypoints: every key event, rejected command, alert and change of a key's limit
state becomes an audit record.

Each handler translates its batch in the order it was read (so per key, the order of the
partition) and hands it to the recorder in one piece; the batch's offsets are committed by
servicekit only after the recorder has stored it.

Key events come by the thousand, so their handler checks them against the contract part
by part while the previous part is being written (see app/pipeline.py): on reading, a
message is only looked at for its account and key; one that then fails the contract is
dead-lettered like any undecodable message, and the rest of its batch is handled again.
Reading a key's event also makes the HTTP side forget the key's cached callers (an audit
process reads the partitions it was assigned: another process forgets the keys of its own,
and a cached caller outlives a change elsewhere by the cache time at most).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from contracts import (
    EVENT_ADAPTER,
    KEYS_COMMAND_RESULTS,
    KEYS_EVENTS,
    USAGE_ALERTS,
    USAGE_LIMITS,
    Alert,
    CommandResult,
    Event,
    LimitState,
)
from servicekit.callers import CallerDirectory
from servicekit.consumer import InvalidMessages, Received, Record, Subscription, decode_error
from services.audit.app.limits import LimitChanges
from services.audit.app.pipeline import PART, record_parts
from services.audit.app.recording import Recorder
from services.audit.domain.entries import Entry
from services.audit.domain.translate import from_alert, from_event, from_result

GROUP_ID = "audit"


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event read but not checked against its contract yet: what it takes to lock its
    chain and look up its key's name before that."""

    raw: bytes
    account_id: str
    key_id: str
    event_type: object


def prescan_event(raw: bytes) -> PendingEvent:
    """Refuses at once what is not even a JSON object naming an account and a key."""
    document = orjson.loads(raw)
    account = document.get("account_id") if isinstance(document, dict) else None
    key = document.get("key_id") if isinstance(document, dict) else None
    if not isinstance(account, str) or not isinstance(key, str) or not _UUID.fullmatch(key):
        raise ValueError("an event is a JSON object with an account_id and a key_id")
    return PendingEvent(raw, account, key, document.get("event_type"))


def sent_at(record: Record) -> datetime:
    """When the producer sent the message (its Kafka timestamp), or now if it has none."""
    if record.timestamp is not None and record.timestamp > 0:
        return datetime.fromtimestamp(record.timestamp / 1000, UTC)
    return datetime.now(UTC)


def checked_parts(batch: list[Received[PendingEvent]]) -> Iterator[list[Entry]]:
    """The batch's entries, part by part; raises InvalidMessages after the last part if
    some events failed their contract (nothing of the batch is then stored)."""
    invalid: dict[tuple[int, int], str] = {}
    for start in range(0, len(batch), PART):
        part: list[Entry] = []
        for item in batch[start : start + PART]:
            where = (item.record.partition, item.record.offset)
            try:
                event = EVENT_ADAPTER.validate_json(item.message.raw)
            except ValidationError as exc:
                invalid[where] = decode_error(exc)
                continue
            if event.account_id != item.message.account_id:  # its chain is not locked
                invalid[where] = "account_id is ambiguous (named twice)"
                continue
            part.append(from_event(event))
        yield part
    if invalid:
        raise InvalidMessages(invalid)


def forget_changed_keys(callers: CallerDirectory, batch: list[Received[PendingEvent]]) -> None:
    """Cached callers of a key that changed are forgotten as soon as its event is read."""
    for item in batch:
        callers.forget_key(item.message.key_id)
    if any(item.message.event_type == "KeyEnabled" for item in batch):
        callers.forget_refusals()  # a key refused so far may be accepted again


def subscriptions(
    recorder: Recorder,
    batch_size: int,
    callers: CallerDirectory,
    limits: LimitChanges,
    limits_topic: str = USAGE_LIMITS,
) -> list[Subscription[Any]]:
    async def record_events(batch: list[Received[PendingEvent]]) -> None:
        forget_changed_keys(callers, batch)
        accounts = {item.message.account_id for item in batch}
        key_ids = {item.message.key_id for item in batch}
        await record_parts(recorder, accounts, key_ids, checked_parts(batch))

    async def record_rejections(batch: list[Received[CommandResult]]) -> None:
        entries = [from_result(item.message, sent_at(item.record)) for item in batch]
        await recorder.record([entry for entry in entries if entry is not None])

    async def record_alerts(batch: list[Received[Alert]]) -> None:
        await recorder.record([from_alert(item.message) for item in batch])

    async def record_limit_changes(batch: list[Received[LimitState]]) -> None:
        await limits.record([item.message for item in batch])

    return [
        Subscription(
            KEYS_EVENTS,
            GROUP_ID,
            prescan_event,
            record_events,
            Event,
            "Every change to every key: one audit record each.",
            max_records=batch_size,
        ),
        Subscription(
            KEYS_COMMAND_RESULTS,
            GROUP_ID,
            CommandResult.model_validate_json,
            record_rejections,
            CommandResult,
            "Command outcomes: a rejected command is audited (who tried what, and why it"
            " failed); an accepted one is audited through the events it produced.",
            max_records=batch_size,
        ),
        Subscription(
            USAGE_ALERTS,
            GROUP_ID,
            Alert.model_validate_json,
            record_alerts,
            Alert,
            "Alerts raised on unusual key activity: one audit record each.",
            max_records=batch_size,
        ),
        Subscription(
            limits_topic,
            GROUP_ID,
            LimitState.model_validate_json,
            record_limit_changes,
            LimitState,
            "Keys' limit states: one audit record per change (limited, cleared), none for"
            " a state sent again or a clear key's moved counts.",
            max_records=batch_size,
        ),
    ]
