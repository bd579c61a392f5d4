"""A stored command result answers only a redelivery of its own command."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from contracts import Actor, CommandResult, DisableKey, DisableKeyData
from services.keys.app.commands import _answer

ACTOR = Actor(type="service", id="billing")


def disable(command_id: uuid.UUID, account: str = "acme") -> DisableKey:
    return DisableKey(
        command_id=command_id,
        account_id=account,
        key_id=uuid.uuid4(),
        actor=ACTOR,
        issued_at=datetime.now(UTC),
        data=DisableKeyData(reason="unpaid"),
    )


def stored(command_id: uuid.UUID, account: str | None, command_type: str | None) -> CommandResult:
    return CommandResult(
        command_id=command_id,
        status="accepted",
        key_id=uuid.uuid4(),
        event_ids=[uuid.uuid4()],
        account_id=account,
        command_type=command_type,
    )


def test_a_redelivered_command_gets_its_stored_result() -> None:
    command_id = uuid.uuid4()
    before = stored(command_id, "acme", "DisableKey")
    assert _answer(disable(command_id), before) is before
    legacy = stored(command_id, None, None)  # a result stored before these fields existed
    assert _answer(disable(command_id), legacy) is legacy


def test_a_command_reusing_another_accounts_or_types_id_is_refused_and_told_nothing() -> None:
    command_id = uuid.uuid4()
    for other in (
        stored(command_id, "globex", "DisableKey"),
        stored(command_id, "acme", "CreateKey"),
    ):
        answer = _answer(disable(command_id), other)
        assert answer.status == "rejected" and answer.error is not None
        assert answer.error.code == "command_id_reused"
        assert answer.key_id != other.key_id and answer.event_ids == []
        assert answer.account_id == "acme"
