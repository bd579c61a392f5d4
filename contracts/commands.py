"""Requests on ``keys.commands``: imperatives other services send to the keys service.

A command may be refused; the keys service answers every command it can identify with a
:class:`~contracts.results.CommandResult` on ``keys.command-results``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final, Literal
from uuid import UUID

from pydantic import ConfigDict, Field, TypeAdapter, model_validator

from contracts.base import (
    AccountId,
    Actor,
    ContractModel,
    CorrelationId,
    UtcDatetime,
    require_in_schema,
)
from contracts.keys import KeyAttributes, KeyPatch, LeakSource, LeakUrl, Reason
from contracts.results import CommandError, CommandResult, extract_command_id

__all__ = [
    "COMMAND_ADAPTER",
    "COMMAND_TYPES",
    "MAX_GRACE_PERIOD_SECONDS",
    "Command",
    "CommandEnvelope",
    "CommandError",
    "CommandResult",
    "CreateKey",
    "DisableKey",
    "DisableKeyData",
    "EnableKey",
    "EnableKeyData",
    "ReportLeakedKey",
    "ReportLeakedKeyData",
    "RevokeKey",
    "RevokeKeyData",
    "RotateKey",
    "RotateKeyData",
    "UpdateKey",
    "extract_command_id",
    "parse_command",
]

MAX_GRACE_PERIOD_SECONDS: Final = 30 * 24 * 3600


class CommandEnvelope(ContractModel):
    """The fields every command carries; subclasses fix ``command_type`` and ``data``."""

    model_config = ConfigDict(json_schema_extra=require_in_schema("command_type"))
    requires_key_id: ClassVar[bool] = True

    command_id: UUID = Field(description="Idempotency key: a repeated command is not re-applied.")
    command_type: str = Field(description="What to do; selects the shape of data.")
    account_id: AccountId = Field(description="The account whose key is concerned.")
    key_id: UUID | None = Field(
        default=None, description="The key to act on; required except for CreateKey."
    )
    actor: Actor = Field(description="On whose behalf the command is sent.")
    issued_at: UtcDatetime = Field(description="When the sender issued the command (UTC).")
    correlation_id: CorrelationId | None = Field(
        default=None, description="Copied onto the resulting events."
    )
    data: ContractModel = Field(description="Type-specific arguments.")

    @model_validator(mode="after")
    def _key_id_when_needed(self) -> CommandEnvelope:
        if self.requires_key_id and self.key_id is None:
            raise ValueError(f"{self.command_type} needs a key_id")
        return self


class DisableKeyData(ContractModel):
    reason: Reason = Field(description="Why the key is disabled (1..500 characters).")


class EnableKeyData(ContractModel):
    reason: Reason | None = Field(default=None, description="Why, for the audit trail.")


class RevokeKeyData(ContractModel):
    reason: Reason | None = Field(default=None, description="Why, for the audit trail.")


class RotateKeyData(ContractModel):
    grace_period_seconds: int = Field(
        default=0,
        ge=0,
        le=MAX_GRACE_PERIOD_SECONDS,
        description="How long the old secret keeps working (0..30 days); 0 ends it now.",
    )
    end_grace_when_quiet_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_GRACE_PERIOD_SECONDS,
        description="End the grace period early once no verification has matched the old"
        " secret for this many seconds (never later than the grace period's end).",
    )

    @model_validator(mode="after")
    def _quiet_needs_grace(self) -> RotateKeyData:
        if self.end_grace_when_quiet_seconds is not None and self.grace_period_seconds == 0:
            raise ValueError("end_grace_when_quiet_seconds needs grace_period_seconds > 0")
        return self


class ReportLeakedKeyData(ContractModel):
    """A report that the key's secret was found where it should not be. Never the secret:
    the sender found the key it names (by the secret's lookup) before sending."""

    source: LeakSource = Field(description="Who found it: github, public, a scanner's name.")
    url: LeakUrl | None = Field(default=None, description="Where it was found, if known.")


class CreateKey(CommandEnvelope):
    """Issue a new key; ``key_id`` may be chosen by the sender or left to the service."""

    requires_key_id: ClassVar[bool] = False
    command_type: Literal["CreateKey"] = "CreateKey"
    data: KeyAttributes


class UpdateKey(CommandEnvelope):
    command_type: Literal["UpdateKey"] = "UpdateKey"
    data: KeyPatch


class DisableKey(CommandEnvelope):
    command_type: Literal["DisableKey"] = "DisableKey"
    data: DisableKeyData


class EnableKey(CommandEnvelope):
    command_type: Literal["EnableKey"] = "EnableKey"
    data: EnableKeyData


class RotateKey(CommandEnvelope):
    command_type: Literal["RotateKey"] = "RotateKey"
    data: RotateKeyData


class RevokeKey(CommandEnvelope):
    command_type: Literal["RevokeKey"] = "RevokeKey"
    data: RevokeKeyData


class ReportLeakedKey(CommandEnvelope):
    """The key's secret leaked: quarantine or revoke it by the environment's policy."""

    command_type: Literal["ReportLeakedKey"] = "ReportLeakedKey"
    data: ReportLeakedKeyData


Command = Annotated[
    CreateKey | UpdateKey | DisableKey | EnableKey | RotateKey | RevokeKey | ReportLeakedKey,
    Field(discriminator="command_type"),
]
# The title names the union in error messages instead of a generated "tagged-union[...]".
COMMAND_ADAPTER: Final[TypeAdapter[Command]] = TypeAdapter(
    Command, config=ConfigDict(title="Command")
)
COMMAND_TYPES: Final = (
    "CreateKey",
    "UpdateKey",
    "DisableKey",
    "EnableKey",
    "RotateKey",
    "RevokeKey",
    "ReportLeakedKey",
)


def parse_command(raw: bytes | str) -> Command:
    """Parse one ``keys.commands`` message (raises pydantic.ValidationError)."""
    return COMMAND_ADAPTER.validate_json(raw)
