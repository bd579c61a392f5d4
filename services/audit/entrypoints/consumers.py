"""Kafka entrypoints: every key event, rejected command, alert and change of a key's limit
state becomes an audit record.

Each handler translates its batch in the order it was read (so per key, the order of the
partition) and hands it to the recorder in one piece; the batch's offsets are committed by
servicekit only after the recorder has stored it.

Key events come by the thousand, so they are decoded a batch at a time by a fast decoder
that accepts a strict subset of what their contract accepts (see key_events.py); the
rest is judged by the contract, and what it refuses is dead-lettered. The next batch is
read and decoded while one is being stored (servicekit's `ahead`: still one batch at a
time to the handler, its offsets committed once it is stored), and the recorder seals
each part of a batch while the previous part is being written (see app/pipeline.py).
Reading a key's event also makes the HTTP side forget the key's cached callers (an audit
process reads the partitions it was assigned: another process forgets the keys of its own,
and a cached caller outlives a change elsewhere by the cache time at most).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from contracts import (
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
from servicekit.consumer import Received, Record, Subscription
from services.audit.app.key_names import KeyNames
from services.audit.app.limits import LimitChanges
from services.audit.app.pipeline import PART, record_parts
from services.audit.app.recording import Recorder
from services.audit.domain.entries import EVENT_ACTIONS, Entry
from services.audit.domain.translate import from_alert, from_result
from services.audit.entrypoints.key_events import decode_event, decode_events

GROUP_ID = "audit"
KEY_ENABLED = EVENT_ACTIONS["KeyEnabled"]


def sent_at(record: Record) -> datetime:
    """When the producer sent the message (its Kafka timestamp), or now if it has none."""
    if record.timestamp is not None and record.timestamp > 0:
        return datetime.fromtimestamp(record.timestamp / 1000, UTC)
    return datetime.now(UTC)


def forget_changed_keys(callers: CallerDirectory, entries: list[Entry]) -> None:
    """Cached callers of a key that changed are forgotten as soon as its event is read."""
    for key_id in {entry.key_id for entry in entries}:
        callers.forget_key(str(key_id))
    if any(entry.action == KEY_ENABLED for entry in entries):
        callers.forget_refusals()  # a key refused so far may be accepted again


def subscriptions(
    recorder: Recorder,
    batch_size: int,
    callers: CallerDirectory,
    limits: LimitChanges,
    limits_topic: str = USAGE_LIMITS,
) -> list[Subscription[Any]]:
    names = KeyNames()

    async def record_events(batch: list[Received[Entry]]) -> None:
        entries = [item.message for item in batch]
        forget_changed_keys(callers, entries)
        accounts = {entry.account_id for entry in entries}
        key_ids = {entry.key_id for entry in entries if entry.key_id is not None}
        parts = (entries[start : start + PART] for start in range(0, len(entries), PART))
        read = [(item.record.partition, item.record.offset, item.message.key_id) for item in batch]
        stored = await record_parts(recorder, accounts, key_ids, parts, names.known(read))
        names.stored(read, stored)

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
            decode_event,
            record_events,
            Event,
            "Every change to every key: one audit record each.",
            max_records=batch_size,
            decode_many=decode_events,
            ahead=True,
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
