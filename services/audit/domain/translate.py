"""From the messages of the three consumed topics to audit entries.

Accepted command results make no entry: the events they produced are the record of what
happened, and carry the actor and the command id (as causation id) themselves.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final
from uuid import UUID

import orjson

from contracts import (
    Actor,
    Alert,
    CommandResult,
    ContractModel,
    EventEnvelope,
    KeyCreatedData,
    KeyUpdatedData,
)
from services.audit.domain.entries import (
    ALERT_RAISED,
    COMMAND_REJECTED,
    EVENT_ACTIONS,
    FAILURE,
    SUCCESS,
    UNATTRIBUTED,
    ActorRef,
    Entry,
)

ALERTING_SERVICE: Final = ActorRef(type="service", id="usage")
_ALERT_DETAILS: Final = {
    "kind",
    "severity",
    "window",
    "observed",
    "expected",
    "evidence",
    "summary",
}


def _actor(actor: Actor) -> ActorRef:
    return ActorRef(actor.type, actor.id, actor.ip, actor.user_agent)


def from_event(event: EventEnvelope) -> Entry:
    """A key event: its data (before/after of an update, a reason...) are the details."""
    return event_entry(
        f"event:{event.event_id}", event.account_id, event.occurred_at, _actor(event.actor),
        event.event_type, event.key_id, event.correlation_id, event.causation_id,
        event_data(event.data), event.stream_version,
    )  # fmt: skip


def event_data(data: ContractModel) -> tuple[str | None, str]:
    """What a key event's `data` (the contract's model) gives its entry: the key's name
    when the event says it (created, renamed), and the details, as the model writes them."""
    name: str | None = None
    if isinstance(data, KeyCreatedData):
        name = data.name
    elif isinstance(data, KeyUpdatedData) and "name" in data.after:
        name = str(data.after["name"])
    return name, data.model_dump_json()


def event_entry(
    source_id: str,
    account_id: str,
    occurred_at: datetime,
    actor: ActorRef,
    event_type: str,
    key_id: UUID,
    correlation_id: str | None,
    causation_id: str | None,
    data: tuple[str | None, str],
    stream_version: int,
) -> Entry:
    """A key event's entry from its parts, however they were read; `data` as `event_data`
    gives it."""
    name, details = data
    version = stream_version if name is not None else None
    return _new_entry(
        Entry,
        (
            source_id, account_id, occurred_at, actor, EVENT_ACTIONS[event_type], key_id,
            SUCCESS, correlation_id, causation_id, details, name, version,
        ),
    )  # fmt: skip


_new_entry: Final = tuple.__new__
"""Makes an entry from all its fields in order, without the named tuple's keyword-reading
`__new__` (a third of the cost; one entry per key event read); tests/unit/test_audit_
translate.py holds it equal to the keywords."""


def from_result(result: CommandResult, sent_at: datetime) -> Entry | None:
    """A rejected command: who tried what, and why it failed. `sent_at` is when the keys
    service answered (the message's timestamp), as the result carries no time of its own."""
    if result.status != "rejected" or result.error is None:
        return None
    details = {
        "command_id": str(result.command_id),
        "command_type": result.command_type,
        "error": {"code": result.error.code, "message": result.error.message},
    }
    return Entry(
        source_id=f"result:{result.command_id}",
        account_id=result.account_id or UNATTRIBUTED,
        occurred_at=sent_at,
        actor=_actor(result.actor) if result.actor is not None else None,
        action=COMMAND_REJECTED,
        key_id=result.key_id,
        outcome=FAILURE,
        correlation_id=result.correlation_id,
        causation_id=str(result.command_id),
        details=orjson.dumps(details).decode(),
    )


def from_alert(alert: Alert) -> Entry:
    """An alert the usage service raised about a key, with what it saw against what it
    expected."""
    return Entry(
        source_id=f"alert:{alert.alert_id}",
        account_id=alert.account_id,
        occurred_at=alert.detected_at,
        actor=ALERTING_SERVICE,
        action=ALERT_RAISED,
        key_id=alert.key_id,
        outcome=SUCCESS,
        correlation_id=None,
        causation_id=None,
        details=alert.model_dump_json(include=_ALERT_DETAILS),
    )
