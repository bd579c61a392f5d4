"""Limits on a key's traffic, and the limit state on ``usage.limits``.

A key may carry request rates per minute, hour and day, a budget of model tokens per day
or month (``tokens_in + tokens_out`` of its usage records) and the networks it may be used
from. The keys service decides at verification; the usage service is the one counter for
every instance: it counts each key's records in event time and publishes the key's state
to the compacted topic ``usage.limits`` whenever it changes. Windows are fixed and in UTC:
a minute, hour or day starts on its boundary; a month on the first day at 00:00.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Literal
from uuid import UUID

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from contracts.base import NOT_A_BOOL, AccountId, ContractModel, UtcDatetime
from contracts.usage import MAX_TOKENS

RateLimit = Annotated[int, Field(ge=1, le=10**9), NOT_A_BOOL]
"""Requests allowed per window of a key; absent or null means no limit."""

RateLimitName = Literal["rate_limit_per_minute", "rate_limit_per_hour", "rate_limit_per_day"]
LimitName = Literal[
    "rate_limit_per_minute", "rate_limit_per_hour", "rate_limit_per_day", "token_budget"
]
LIMIT_NAMES: Final[tuple[LimitName, ...]] = (
    "rate_limit_per_minute",
    "rate_limit_per_hour",
    "rate_limit_per_day",
    "token_budget",
)
BudgetPeriod = Literal["day", "month"]
MAX_ALLOWED_CIDRS: Final = 100


class TokenBudget(ContractModel):
    """Model tokens (``tokens_in + tokens_out``) a key may spend per day or calendar month."""

    tokens: int = Field(ge=1, le=MAX_TOKENS, description="Tokens allowed per period.")
    period: BudgetPeriod = Field(description="day (UTC) or month (UTC calendar month).")

    @model_validator(mode="before")
    @classmethod
    def _whole_tokens(cls, raw: object) -> object:
        if isinstance(raw, dict) and isinstance(raw.get("tokens"), bool):
            raise ValueError("tokens: a whole number is expected, not true or false")
        return raw


_CIDR_PATTERN: Final = r"^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$"


def _canonical_network(value: str) -> str:
    # The schema's pattern first, so what the schema refuses is refused here too (the
    # parser alone would take a netmask, 203.0.113.0/255.255.255.0, or an IPv6 zone).
    if not 2 <= len(value) <= 43 or not re.fullmatch(_CIDR_PATTERN, value):
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 network such as 203.0.113.0/24")
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(
            f"{value!r} is not an IPv4 or IPv6 network such as 203.0.113.0/24 ({exc})"
        ) from None
    return str(network)


def _unique_networks(networks: list[str]) -> list[str]:
    repeated = sorted({n for n in networks if networks.count(n) > 1})
    if repeated:
        raise ValueError(f"allowed_cidrs must be unique; repeated: {', '.join(repeated)}")
    return networks


Cidr = Annotated[
    str,
    AfterValidator(_canonical_network),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 2,
            "maxLength": 43,
            "pattern": _CIDR_PATTERN,
            "description": "An IPv4 or IPv6 network in CIDR notation, host bits zero "
            "(203.0.113.0/24, 2001:db8::/32); a bare address is a network of one.",
        }
    ),
]
"""A network in canonical CIDR form: equal networks compare equal as text."""

AllowedCidrs = Annotated[
    list[Cidr],
    Field(max_length=MAX_ALLOWED_CIDRS, json_schema_extra={"uniqueItems": True}),
    AfterValidator(_unique_networks),
]
"""Where a key may be used from; empty means anywhere."""


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks_of(allowed_cidrs: Iterable[str]) -> tuple[Network, ...]:
    """The networks of ``allowed_cidrs`` parsed once, for many membership checks."""
    return tuple(ipaddress.ip_network(cidr) for cidr in allowed_cidrs)


def address_in(networks: Iterable[Network], source_ip: str) -> bool:
    """Whether ``source_ip`` lies in one of ``networks``; an IPv4 client seen through a
    dual-stack socket (``::ffff:203.0.113.9``) is its IPv4 address. Raises ValueError for
    text that is no address."""
    address = ipaddress.ip_address(source_ip)
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    address = mapped or address
    return any(address in network for network in networks)


def network_allows(allowed_cidrs: list[str] | tuple[str, ...], source_ip: str) -> bool:
    """Whether ``source_ip`` lies in one of the networks (an empty list allows every address)."""
    if not allowed_cidrs:
        return True
    return address_in(networks_of(allowed_cidrs), source_ip)


def window_bounds(
    limit_name: LimitName, period: BudgetPeriod | None, at: datetime
) -> tuple[datetime, datetime]:
    """The fixed UTC window of a limit that holds ``at``: [start, end)."""
    at = at.astimezone(UTC)
    if limit_name == "rate_limit_per_minute":
        start = at.replace(second=0, microsecond=0)
        return start, start + timedelta(minutes=1)
    if limit_name == "rate_limit_per_hour":
        start = at.replace(minute=0, second=0, microsecond=0)
        return start, start + timedelta(hours=1)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if limit_name == "rate_limit_per_day" or period == "day":
        return day, day + timedelta(days=1)
    month = day.replace(day=1)
    following = (month + timedelta(days=32)).replace(day=1)
    return month, following


LimitStateName = Literal["clear", "rate_limited", "budget_exhausted"]


class LimitWindow(ContractModel):
    """What one limit of a key has counted in its current window."""

    counted: int = Field(ge=0, description="Requests (or tokens) counted in the window so far.")
    limit: int = Field(ge=0, description="What the window allows.")
    reset_at: UtcDatetime = Field(description="When the window ends (exclusive).")


class LimitState(ContractModel):
    """A key's limit state on ``usage.limits`` (compacted, message key = ``key_id``).

    The latest message of a key is its state: ``clear`` (every limit has room), or limited
    by ``limit_name`` until ``until`` (the end of that limit's window). ``counted`` and
    ``limit`` are what was counted in that window against what is allowed, and ``as_of`` is
    the event time of the newest record counted, so a reader keeps the newer of two states.
    A clear state is sent again, at most about once a second per key, while its counts move,
    so that ``windows`` tells verifiers what remains.
    """

    key_id: UUID = Field(description="The key; also the message key.")
    account_id: AccountId = Field(description="The account that owns the key.")
    state: LimitStateName = Field(description="clear, rate_limited or budget_exhausted.")
    limit_name: LimitName | None = Field(
        default=None, description="The limit that was reached; null when clear."
    )
    until: UtcDatetime | None = Field(
        default=None, description="When the window ends and the key is allowed again."
    )
    counted: int | None = Field(
        default=None, ge=0, description="Requests (or tokens) counted in that window."
    )
    limit: int | None = Field(default=None, ge=0, description="What that window allows.")
    as_of: UtcDatetime = Field(description="Event time of the newest record counted.")
    windows: dict[LimitName, LimitWindow] = Field(
        default_factory=dict,
        description="Each limit of the key with its count in the current window, so a "
        "verifier can say what remains; sent with every state, clear ones included.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> LimitState:
        limited = self.state != "clear"
        if limited and (self.limit_name is None or self.until is None):
            raise ValueError("a limited state names its limit_name and until")
        if self.state == "budget_exhausted" and self.limit_name != "token_budget":
            raise ValueError("budget_exhausted is the state of the token_budget limit")
        if self.state == "rate_limited" and self.limit_name == "token_budget":
            raise ValueError("rate_limited is the state of a rate_limit_per_* limit")
        return self
