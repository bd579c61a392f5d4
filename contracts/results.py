"""Answers on ``keys.command-results``: what became of each command.

The result is keyed by ``command_id`` and is the same every time the command is
repeated, which is what makes ``command_id`` an idempotency key a sender can rely on.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal
from uuid import UUID

from pydantic import Field, TypeAdapter, ValidationError, model_validator

from contracts.base import AccountId, Actor, ContractModel, CorrelationId, Text
from contracts.keys import KeyPrefix

INVALID_COMMAND: Final = "invalid_command"
"""Error code of a message that has a readable ``command_id`` but is not a valid command."""
MAX_ERROR_MESSAGE: Final = 2000

_UUID_ADAPTER: Final = TypeAdapter(UUID)


class CommandError(ContractModel):
    """Why a command was rejected, as a stable code a program can branch on."""

    code: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,63}$", description="Stable snake_case code, e.g. not_found."
    )
    message: Text = Field(
        min_length=1, max_length=MAX_ERROR_MESSAGE, description="Explanation for a person."
    )


class CommandResult(ContractModel):
    """The outcome of one command: the events it produced, or the error that stopped it."""

    command_id: UUID = Field(description="The command this answers; also the message key.")
    status: Literal["accepted", "rejected"] = Field(description="Whether the command applied.")
    key_id: UUID | None = Field(default=None, description="The key concerned, when known.")
    event_ids: list[UUID] = Field(
        default_factory=list, description="Events the command produced, in order."
    )
    error: CommandError | None = Field(default=None, description="Present exactly on rejection.")
    prefix: KeyPrefix | None = Field(
        default=None, description="The key's new display prefix (CreateKey, RotateKey); no secret."
    )
    # Who tried what: copied from the command, so that a rejection can be audited without
    # the command itself (null when the message was not a readable command).
    account_id: AccountId | None = Field(
        default=None, description="The account the command was for, when it could be read."
    )
    command_type: str | None = Field(
        default=None,
        pattern=r"^[A-Z][A-Za-z0-9]{0,63}$",
        description="The command's type (e.g. DisableKey), when it could be read.",
    )
    actor: Actor | None = Field(
        default=None, description="On whose behalf the command was sent, when it could be read."
    )
    correlation_id: CorrelationId | None = Field(
        default=None, description="The command's correlation id, if it had one."
    )

    @model_validator(mode="after")
    def _consistent_outcome(self) -> CommandResult:
        if self.status == "rejected" and (self.error is None or self.event_ids):
            raise ValueError("a rejected result carries an error and no event_ids")
        if self.status == "accepted" and self.error is not None:
            raise ValueError("an accepted result carries no error")
        return self

    @classmethod
    def rejected(
        cls, command_id: UUID, code: str, message: str, key_id: UUID | None = None
    ) -> CommandResult:
        """A rejection; an over-long message (e.g. a validation report) is shortened, and
        a NUL it quotes from the refused input is escaped (error text may not hold one)."""
        message = message.replace("\x00", "\\x00")
        if len(message) > MAX_ERROR_MESSAGE:
            message = message[: MAX_ERROR_MESSAGE - 1] + "…"
        error = CommandError(code=code, message=message or code)
        return cls(command_id=command_id, status="rejected", key_id=key_id, error=error)


def extract_command_id(raw: bytes | str) -> UUID | None:
    """Best effort: the ``command_id`` of a message that failed to parse as a command.

    With it the keys service can answer the sender with a rejection instead of leaving
    it waiting; without it (not UTF-8, not a JSON object, no readable UUID) the message
    can only go to the dead-letter topic.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        document: Any = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("command_id"), str):
        return None
    try:
        return _UUID_ADAPTER.validate_python(document["command_id"])
    except ValidationError:
        return None
