"""What each consumed message becomes in the audit log: action, actor, target, details."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from contracts import Actor, CommandError, CommandResult, Event
from contracts.examples import example_alert, example_events, example_results
from services.audit.domain.entries import ACTIONS, UNATTRIBUTED, ActorRef, Entry
from services.audit.domain.translate import event_entry, from_alert, from_event, from_result

SENT = datetime(2026, 11, 26, 18, 30, tzinfo=UTC)
EVENTS: dict[str, Event] = {e.event_type: e for e in example_events(account_id="acme")}


@pytest.mark.parametrize(
    ("event_type", "action"),
    [
        ("KeyCreated", "key.created"),
        ("KeyUpdated", "key.updated"),
        ("KeyDisabled", "key.disabled"),
        ("KeyEnabled", "key.enabled"),
        ("KeyRotated", "key.rotated"),
        ("KeyRevealed", "key.revealed"),
        ("KeyRevoked", "key.revoked"),
        ("KeyExpired", "key.expired"),
    ],
)
def test_each_key_event_becomes_its_action_with_its_actor_and_data(
    event_type: str, action: str
) -> None:
    event: Event = EVENTS[event_type]
    entry = from_event(event)
    assert entry.action == action and action in ACTIONS
    assert entry.source_id == f"event:{event.event_id}"
    assert (entry.account_id, entry.key_id, entry.occurred_at) == (
        "acme",
        event.key_id,
        event.occurred_at,
    )
    assert entry.actor == ActorRef("user", "alice@example.com", "203.0.113.7", "curl/8.5")
    assert (entry.correlation_id, entry.causation_id) == (event.correlation_id, event.causation_id)
    assert entry.outcome == "success"
    assert orjson.loads(entry.details) == event.data.model_dump(mode="json")


def test_a_created_or_renamed_key_carries_its_new_name() -> None:
    assert from_event(EVENTS["KeyCreated"]).key_name == "CI pipeline"
    assert from_event(EVENTS["KeyCreated"]).key_version == 1
    assert from_event(EVENTS["KeyUpdated"]).key_name is None  # scopes changed, not the name
    renamed = EVENTS["KeyUpdated"].model_copy(
        update={"data": EVENTS["KeyUpdated"].data.model_copy(
            update={"before": {"name": "old"}, "after": {"name": "new"}}
        )}
    )  # fmt: skip
    entry = from_event(renamed)
    assert (entry.key_name, entry.key_version) == ("new", renamed.stream_version)
    assert orjson.loads(entry.details) == {"before": {"name": "old"}, "after": {"name": "new"}}


def test_a_rejected_command_says_who_tried_what_and_why_it_failed() -> None:
    command_id, key_id = uuid.uuid4(), uuid.uuid4()
    result = CommandResult(
        command_id=command_id,
        status="rejected",
        key_id=key_id,
        error=CommandError(code="key_revoked", message="key is revoked"),
        account_id="acme",
        command_type="DisableKey",
        actor=Actor(type="service", id="billing"),
        correlation_id="run-7",
    )
    entry = from_result(result, SENT)
    assert entry is not None
    assert (entry.action, entry.outcome, entry.account_id) == (
        "command.rejected",
        "failure",
        "acme",
    )
    assert entry.actor == ActorRef("service", "billing")
    assert (entry.source_id, entry.causation_id) == (f"result:{command_id}", str(command_id))
    assert (entry.key_id, entry.occurred_at, entry.correlation_id) == (key_id, SENT, "run-7")
    assert orjson.loads(entry.details) == {
        "command_id": str(command_id),
        "command_type": "DisableKey",
        "error": {"code": "key_revoked", "message": "key is revoked"},
    }


def test_an_accepted_result_is_audited_through_its_events_only() -> None:
    accepted, rejected = example_results()
    assert from_result(accepted, SENT) is None
    unreadable = from_result(rejected, SENT)  # no account: a command too broken to read
    assert unreadable is not None and unreadable.account_id == UNATTRIBUTED
    assert unreadable.actor is None


def test_an_alert_is_recorded_as_raised_by_the_usage_service() -> None:
    alert = example_alert(account_id="acme")
    entry = from_alert(alert)
    assert (entry.action, entry.source_id) == ("alert.raised", f"alert:{alert.alert_id}")
    assert entry.actor == ActorRef("service", "usage")
    assert (entry.key_id, entry.occurred_at) == (alert.key_id, alert.detected_at)
    details = orjson.loads(entry.details)
    assert details["kind"] == alert.kind and details["summary"] == alert.summary
    assert set(details["window"]) == {"from", "to"}


def test_a_key_events_entry_holds_each_field_where_its_name_says() -> None:
    key_id, actor = uuid.uuid4(), ActorRef("user", "u-1", "203.0.113.9", "agent")
    entry = event_entry(
        "event:1", "acme", SENT, actor, "KeyCreated", key_id, "c-1", "c-2", ("new", "{}"), 1
    )
    assert entry == Entry(
        source_id="event:1",
        account_id="acme",
        occurred_at=SENT,
        actor=actor,
        action="key.created",
        key_id=key_id,
        outcome="success",
        correlation_id="c-1",
        causation_id="c-2",
        details="{}",
        key_name="new",
        key_version=1,
    )
    assert entry._asdict()["key_version"] == 1 and len(entry) == len(Entry._fields)
    unnamed = event_entry("e", "a", SENT, actor, "KeyDisabled", key_id, None, None, (None, "{}"), 4)
    assert (unnamed.key_name, unnamed.key_version) == (None, None)
