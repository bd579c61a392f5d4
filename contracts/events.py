"""Facts on ``keys.events``: what happened to a key, in the order it happened.

One class per event type, all sharing one envelope. Readers parse with
:func:`parse_event` and dispatch on the class; an event type or schema version this
code does not know is a validation error that names the value, never a silent skip.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Final, Literal
from uuid import UUID

from pydantic import ConfigDict, Field, TypeAdapter, field_validator
from pydantic_core import PydanticCustomError

from contracts.base import (
    AccountId,
    Actor,
    ContractModel,
    CorrelationId,
    UtcDatetime,
    require_in_schema,
)
from contracts.event_data import (
    KeyCreatedData,
    KeyDisabledData,
    KeyEnabledData,
    KeyExpiredData,
    KeyGracePeriodEndedData,
    KeyReportedLeakedData,
    KeyRevealedData,
    KeyRevokedData,
    KeyRotatedData,
    KeyUpdatedData,
)
from contracts.topics import EVENT_ID_HEADER, EVENT_TYPE_HEADER, SCHEMA_VERSION_HEADER

SCHEMA_VERSION: Final = 1
_MAX_BIGINT: Final = 2**63 - 1  # stream_version and position live in Postgres bigint columns


class EventEnvelope(ContractModel):
    """The fields every event carries; subclasses fix ``event_type`` and ``data``."""

    model_config = ConfigDict(json_schema_extra=require_in_schema("event_type"))
    supported_versions: ClassVar[tuple[int, ...]] = (SCHEMA_VERSION,)

    event_id: UUID = Field(description="Unique id of this event; consumers deduplicate on it.")
    event_type: str = Field(description="Which fact this is; selects the shape of data.")
    schema_version: Literal[1] = Field(default=1, description="Version of this event's shape.")
    key_id: UUID = Field(description="The key the event is about; also the Kafka message key.")
    account_id: AccountId = Field(description="The account that owns the key.")
    stream_version: int = Field(
        ge=1, le=_MAX_BIGINT, description="1 for the key's first event, +1 per event, no gaps."
    )
    position: int = Field(
        ge=1, le=_MAX_BIGINT, description="Commit order across all keys; strictly increasing."
    )
    occurred_at: UtcDatetime = Field(description="When the change was committed (UTC).")
    actor: Actor = Field(description="Who caused it.")
    correlation_id: CorrelationId | None = Field(
        default=None, description="Ties the event to the request or flow that caused it."
    )
    causation_id: CorrelationId | None = Field(
        default=None, description="The command id that produced the event, if any."
    )
    data: ContractModel = Field(description="Type-specific payload.")

    @field_validator("schema_version", mode="before")
    @classmethod
    def _known_version(cls, value: Any) -> Any:
        if isinstance(value, bool) or value not in cls.supported_versions:
            raise PydanticCustomError(
                "unsupported_schema_version",
                "schema_version {version} is not supported (this reader knows {known})",
                {"version": repr(value), "known": ", ".join(map(str, cls.supported_versions))},
            )
        return value


class KeyCreated(EventEnvelope):
    """A key was issued; always the first event of its stream."""

    event_type: Literal["KeyCreated"] = "KeyCreated"
    data: KeyCreatedData

    @field_validator("stream_version")
    @classmethod
    def _first_in_stream(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"KeyCreated starts a stream: stream_version must be 1, not {value}")
        return value


class KeyUpdated(EventEnvelope):
    event_type: Literal["KeyUpdated"] = "KeyUpdated"
    data: KeyUpdatedData


class KeyDisabled(EventEnvelope):
    event_type: Literal["KeyDisabled"] = "KeyDisabled"
    data: KeyDisabledData


class KeyEnabled(EventEnvelope):
    event_type: Literal["KeyEnabled"] = "KeyEnabled"
    data: KeyEnabledData


class KeyRotated(EventEnvelope):
    event_type: Literal["KeyRotated"] = "KeyRotated"
    data: KeyRotatedData


class KeyRevealed(EventEnvelope):
    """Someone looked at the secret again: recorded because a reveal widens exposure."""

    event_type: Literal["KeyRevealed"] = "KeyRevealed"
    data: KeyRevealedData


class KeyRevoked(EventEnvelope):
    """Terminal: no event follows a revocation."""

    event_type: Literal["KeyRevoked"] = "KeyRevoked"
    data: KeyRevokedData


class KeyExpired(EventEnvelope):
    event_type: Literal["KeyExpired"] = "KeyExpired"
    data: KeyExpiredData


class KeyReportedLeaked(EventEnvelope):
    """A report that the secret leaked; the KeyDisabled or KeyRevoked it caused follows."""

    event_type: Literal["KeyReportedLeaked"] = "KeyReportedLeaked"
    data: KeyReportedLeakedData


class KeyGracePeriodEnded(EventEnvelope):
    """A rotation's old secret stopped verifying before its grace period's end; the reason
    says why (its clients had moved to the new secret)."""

    event_type: Literal["KeyGracePeriodEnded"] = "KeyGracePeriodEnded"
    data: KeyGracePeriodEndedData


Event = Annotated[
    KeyCreated
    | KeyUpdated
    | KeyDisabled
    | KeyEnabled
    | KeyRotated
    | KeyRevealed
    | KeyRevoked
    | KeyExpired
    | KeyReportedLeaked
    | KeyGracePeriodEnded,
    Field(discriminator="event_type"),
]
# The title names the union in error messages instead of a generated "tagged-union[...]".
EVENT_ADAPTER: Final[TypeAdapter[Event]] = TypeAdapter(Event, config=ConfigDict(title="Event"))
EVENT_TYPES: Final = (
    "KeyCreated",
    "KeyUpdated",
    "KeyDisabled",
    "KeyEnabled",
    "KeyRotated",
    "KeyRevealed",
    "KeyRevoked",
    "KeyExpired",
    "KeyReportedLeaked",
    "KeyGracePeriodEnded",
)


def parse_event(raw: bytes | str) -> Event:
    """Parse one ``keys.events`` message (raises pydantic.ValidationError)."""
    return EVENT_ADAPTER.validate_json(raw)


def event_headers(event: EventEnvelope) -> list[tuple[str, bytes]]:
    """The Kafka headers of an event, so a reader can route without parsing the body."""
    return [
        (EVENT_TYPE_HEADER, event.event_type.encode()),
        (EVENT_ID_HEADER, str(event.event_id).encode()),
        (SCHEMA_VERSION_HEADER, str(event.schema_version).encode()),
    ]
