"""Building blocks shared by every message that crosses a service boundary.

Every contract is frozen (a message is a fact, not a workspace) and forbids unknown
fields (a typo must fail loudly at the edge, not vanish). Times are always UTC and
always written the same way, so that a message re-serialised by any service is
byte-for-byte the message it read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.config import JsonDict


class ContractModel(BaseModel):
    """Base of every contract: immutable, strict about unknown fields, finite floats."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        str_strip_whitespace=False,
        allow_inf_nan=False,  # inf/NaN have no JSON form and would not survive a round trip
    )


def _reject_non_text_times(value: Any) -> Any:
    # Pydantic would read a number as a Unix timestamp, in a string too (a query's
    # `since=0.5`); the wire format is ISO-8601 only.
    if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
        raise ValueError("expected an ISO-8601 timestamp with a timezone, got a number")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            "timestamp has no timezone; send it in UTC like 2026-11-26T18:00:00.123456Z"
        )
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00
        raise ValueError("timestamp is out of range once converted to UTC") from exc


def format_utc(value: datetime) -> str:
    """The one textual form of a time on the wire: six fractional digits and a trailing Z."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


UtcDatetime = Annotated[
    datetime,
    BeforeValidator(_reject_non_text_times),
    AfterValidator(_to_utc),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
]
"""A timezone-aware instant, normalised to UTC, written as ``2026-11-26T18:00:00.123456Z``."""


def _to_utc_held(value: datetime) -> datetime:
    offset = value.utcoffset()
    if offset is None:
        return _to_utc(value)  # refused: no timezone
    try:
        return value.astimezone(UTC)
    except OverflowError:  # before the first time there is, or after the last
        return (datetime.min if offset > timedelta(0) else datetime.max).replace(tzinfo=UTC)


TimeBound = Annotated[
    datetime,
    BeforeValidator(_reject_non_text_times),
    AfterValidator(_to_utc_held),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
]
"""A bound of a time window in a query (`since`, `from`): a UtcDatetime, except that a
valid timestamp beyond the times there are once in UTC (0001-01-01T00:00:00+01:00) is the
first or last of them rather than an error, as a window bound means the same then."""


def _canonical_ip(value: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None
    # A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; it is the same client.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)


IpAddress = Annotated[
    str,
    AfterValidator(_canonical_ip),
    WithJsonSchema({"type": "string", "description": "An IPv4 or IPv6 address."}),
]
"""An IP address as text in canonical form (IPv4-mapped IPv6 as IPv4): equal ones compare equal."""


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters (PostgreSQL cannot store them)")
    return value


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a whole number is expected, not true or false")
    return value


NOT_A_BOOL = BeforeValidator(_not_a_bool)
"""For a whole number as JSON Schema's `integer` means it: 3 and 3.0, never `true` (which
pydantic would otherwise read as 1). Put after the number's Field(...) in an Annotated:
before it, pydantic leaves the bounds out of the JSON Schema."""
Whole = Annotated[int, NOT_A_BOOL]

Text = Annotated[str, AfterValidator(_no_nul), Field(json_schema_extra={"pattern": "^[^\\x00]*$"})]
"""Free text that every service can store: no NUL, which would poison a PostgreSQL insert."""

AccountId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
"""The tenant an access key belongs to, e.g. ``demo``."""

CorrelationId = Annotated[Text, Field(min_length=1, max_length=200)]
"""An opaque id that ties together the messages of one business operation."""


class Actor(ContractModel):
    """Who caused a command or an event: the audit trail answers "who did this" with it."""

    type: Literal["user", "service", "system"] = Field(
        description="A person, another service, or the platform itself (e.g. expiry)."
    )
    id: Text = Field(min_length=1, max_length=200, description="The actor's id in its realm.")
    ip: IpAddress | None = Field(default=None, description="Source IP address, when known.")
    user_agent: Text | None = Field(
        default=None, max_length=500, description="Client user agent, when known."
    )


def require_in_schema(*names: str) -> Callable[[JsonDict], None]:
    """JSON-schema hook marking defaulted discriminator fields as required on the wire.

    ``event_type`` and ``command_type`` have defaults for convenience in Python, but a
    union reader needs them in every message, so the published schema says so.
    """

    def hook(schema: JsonDict) -> None:
        existing = schema.get("required")
        required = list(existing) if isinstance(existing, list) else []
        schema["required"] = [*required, *(name for name in names if name not in required)]

    return hook
