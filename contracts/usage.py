"""Facts on ``usage.records``: one line per API request made with a key.

Gateways write them and the usage service turns them into counters and alerts, so the
record carries what anomaly detection needs (source network, outcome, volume) and nothing
it does not (no request body, no secret).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final, Literal
from uuid import UUID, uuid4, uuid5

from pydantic import AfterValidator, Field

from contracts.base import AccountId, ContractModel, IpAddress, Text, UtcDatetime

MAX_TOKENS: Final = 2**53  # stays exact in every JSON reader, including JavaScript's
SecretMatched = Literal["current", "previous"]
"""Which secret of a key a verification matched: the current one, or the one a rotation
replaced, while its grace period lasts."""


EARLIEST_USAGE_TIME: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_USAGE_TIME: Final = datetime(9999, 1, 1, tzinfo=UTC)
"""A request's time is from the Unix epoch to before the last year there are dates for:
every window that holds it (its minute, day, month; a limit's next reset) can be named."""


def _countable(value: datetime) -> datetime:
    if not EARLIEST_USAGE_TIME <= value < LATEST_USAGE_TIME:
        raise ValueError(
            "occurred_at must be from 1970-01-01T00:00:00Z to before 9999-01-01T00:00:00Z"
        )
    return value


UsageTime = Annotated[UtcDatetime, AfterValidator(_countable)]


class UsageRecord(ContractModel):
    """One request served (or refused) on behalf of a key."""

    record_id: UUID = Field(description="Unique id of the record; the usage service dedupes on it.")
    key_id: UUID = Field(description="The key that made the request; also the message key.")
    account_id: AccountId = Field(description="The account that owns the key.")
    occurred_at: UsageTime = Field(
        description="When the request was received (UTC), from 1970-01-01T00:00:00Z to"
        " before 9999-01-01T00:00:00Z."
    )
    source_ip: IpAddress = Field(description="Client IP address as the gateway saw it.")
    user_agent: Text | None = Field(
        default=None, max_length=500, description="Client user agent, when sent."
    )
    endpoint: Text = Field(
        min_length=1, max_length=200, description="Path called, e.g. /v1/generate."
    )
    model: Text | None = Field(
        default=None, max_length=100, description="Model requested, e.g. instagen-xl."
    )
    status_code: int = Field(ge=100, le=599, description="HTTP status returned to the client.")
    tokens_in: int = Field(ge=0, le=MAX_TOKENS, description="Prompt tokens consumed.")
    tokens_out: int = Field(ge=0, le=MAX_TOKENS, description="Output tokens produced.")
    latency_ms: float = Field(ge=0, description="Time to serve the request, in milliseconds.")
    secret: SecretMatched | None = Field(
        default=None,
        description="Which of the key's secrets the request presented: previous for a"
        " rotated-out secret in its grace period (the verify answer says which); null:"
        " not told (read as current).",
    )


REFUSED_STATUSES: Final = frozenset({401, 403})
"""A record with one of these statuses is a request refused for the key itself (unknown,
disabled, revoked or expired secret; a permission it lacks), such as the keys service's own
refusals: an attempt, not a use. Every other record, whatever the upstream answered
(2xx-5xx, a rate limit's 429 included), is a use of the key. This is the one meaning of a
key's "last used" for every service: docs/last-used.md."""


RECORD_ID_NAMESPACE: Final = UUID("5b0c9f62-8a4e-5d7e-9a51-6a1f0f3a2b10")
"""The UUID5 namespace of record ids made from a gateway's request id that is no UUID."""


def record_id_for(request_id: str | None) -> UUID:
    """The ``record_id`` of the usage record of a gateway's request: its request id when
    that is a UUID (nginx's ``$request_id``, 32 hex digits, is one), else a UUID5 of it,
    so every reporter of one request (forward auth, the gateway, the model API) writes the
    same id and the usage service counts it once; a new id without a request id."""
    if not request_id:
        return uuid4()
    try:
        return UUID(request_id)
    except ValueError:
        return uuid5(RECORD_ID_NAMESPACE, request_id)
