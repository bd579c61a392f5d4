"""The attributes of an access key, as every service must read and write them.

The limits live here, once: the keys service enforces them on create and update, and
every reader can rely on them (a name fits in 100 characters, a scope looks like one).
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    Field,
    GetJsonSchemaHandler,
    SerializerFunctionWrapHandler,
    StrictBool,
    TypeAdapter,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from contracts.base import ContractModel, Text, UtcDatetime
from contracts.limits import AllowedCidrs, RateLimit, TokenBudget

# What the checks below allow, as patterns for the JSON Schema (and so the OpenAPI
# documents): control characters (Cc) nowhere, and at the ends no character that
# str.strip() removes; a test holds the patterns and the checks equal. (Lone surrogates,
# Cs, are refused too; no pattern says so, as JSON Schema tools cannot generate them.)
_CONTROL = "\\x00-\\x1f\\x7f-\\x9f"
_SPACE = "\\x20\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
NAME_PATTERN: Final = f"^[^{_CONTROL}{_SPACE}]([^{_CONTROL}]*[^{_CONTROL}{_SPACE}])?$"
DESCRIPTION_PATTERN: Final = "^[^\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f]*$"


def _check_name(value: str) -> str:
    if not value.strip():
        raise ValueError("name must contain a visible character")
    if value != value.strip():
        raise ValueError("name must not start or end with whitespace")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        raise ValueError("name must not contain control characters")
    return value


def _check_description(value: str) -> str:
    if any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\n\t" for c in value):
        raise ValueError("description must not contain control characters other than \\n, \\t")
    return value


def _check_unique(scopes: list[str]) -> list[str]:
    duplicates = sorted({scope for scope in scopes if scopes.count(scope) > 1})
    if duplicates:
        raise ValueError(f"scopes must be unique; repeated: {', '.join(duplicates)}")
    return scopes


KeyName = Annotated[
    str,
    Field(min_length=1, max_length=100, json_schema_extra={"pattern": NAME_PATTERN}),
    AfterValidator(_check_name),
]
KeyDescription = Annotated[
    str,
    Field(max_length=1000, json_schema_extra={"pattern": DESCRIPTION_PATTERN}),
    AfterValidator(_check_description),
]
Environment = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
Scope = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*(:[a-z0-9_*-]+)+$")]
Scopes = Annotated[
    list[Scope],
    Field(max_length=50, json_schema_extra={"uniqueItems": True}),
    AfterValidator(_check_unique),
]
RateLimitPerHour = RateLimit
KeyPrefix = Annotated[str, Field(pattern=r"^[a-z]{2,8}_[a-z0-9]{1,16}_[A-Za-z0-9]{4}$")]
"""The display start of a secret (``ig_live_Ab3d``): enough to recognise a key, not to use it."""
KeyStatus = Literal["active", "disabled", "revoked", "expired"]
Reason = Annotated[Text, Field(min_length=1, max_length=500)]
"""Why a person or a policy acted on a key; shown in the audit trail."""
LeakSource = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
"""Who reported a leaked key: ``github``, ``public``, an internal scanner's name."""
LeakUrl = Annotated[Text, Field(min_length=1, max_length=2000)]
"""Where the leaked secret was found (a commit, a paste), as the reporter gave it."""
LeakAction = Literal["quarantined", "revoked", "none"]
"""What a report did: disabled with reason ``reported_leaked``, revoked, or nothing more."""
GraceEndReason = Literal["old_secret_quiet"]
"""Why a rotation's grace period ended before grace_period_ends_at (KeyGracePeriodEnded)."""
QUARANTINE_REASON: Final = "reported_leaked"
"""The reason of the KeyDisabled that quarantines a key reported leaked."""

PRODUCTION: Final = "production"
STAGING: Final = "staging"
DEVELOPMENT: Final = "development"

SCOPE_KEYS_MANAGE: Final = "keys:manage"
SCOPE_KEYS_VERIFY: Final = "keys:verify"
SCOPE_AUDIT_READ: Final = "audit:read"
SCOPE_USAGE_READ: Final = "usage:read"
SCOPE_KEYS_VERIFY_ANY_ACCOUNT: Final = "keys:verify:any-account"
"""For the platform's own API gateways: verify the keys of every account. Not part of an
account's admin key: without it, a key verifies only its own account's keys."""
ALL_PLATFORM_SCOPES: Final = (
    SCOPE_KEYS_MANAGE,
    SCOPE_KEYS_VERIFY,
    SCOPE_AUDIT_READ,
    SCOPE_USAGE_READ,
)


class KeyAttributes(ContractModel):
    """What a caller chooses about a new key (the data of ``CreateKey``)."""

    name: KeyName = Field(description="Human name of the key, 1..100 characters.")
    description: KeyDescription | None = Field(default=None, description="Free text, optional.")
    environment: Environment = Field(
        default=PRODUCTION, description="Lowercase slug, e.g. production, staging, development."
    )
    scopes: Scopes = Field(default_factory=list, description="What the key may do, unique.")
    rate_limit_per_hour: RateLimitPerHour | None = Field(
        default=None, description="Requests allowed per hour; null means no limit."
    )
    expires_at: UtcDatetime | None = Field(
        default=None, description="When the key stops working; null means never."
    )
    canary: StrictBool = Field(
        default=False,
        description="A decoy planted to catch intruders: never valid, every use raises a"
        " critical alert. Set at creation only.",
    )
    rate_limit_per_minute: RateLimit | None = Field(
        default=None, description="Requests allowed per minute (UTC); null means no limit."
    )
    rate_limit_per_day: RateLimit | None = Field(
        default=None, description="Requests allowed per day (UTC); null means no limit."
    )
    token_budget: TokenBudget | None = Field(
        default=None,
        description="Model tokens (tokens_in + tokens_out) allowed per day or month; null: none.",
    )
    allowed_cidrs: AllowedCidrs = Field(
        default_factory=list,
        description="IPv4/IPv6 networks the key may be used from; empty means anywhere.",
    )


class KeyPatch(ContractModel):
    """A partial update: only the fields present change; an explicit null clears a field.

    Absence and null mean different things, so a patch serialises only the fields it was
    given; otherwise a round trip through Kafka would turn "unchanged" into "cleared".
    """

    name: KeyName | None = Field(default=None, description="New name (cannot be cleared).")
    description: KeyDescription | None = Field(default=None, description="null clears it.")
    scopes: Scopes | None = Field(default=None, description="Replaces all scopes; [] for none.")
    rate_limit_per_hour: RateLimitPerHour | None = Field(
        default=None, description="null removes the limit."
    )
    expires_at: UtcDatetime | None = Field(default=None, description="null: never expires.")
    rate_limit_per_minute: RateLimit | None = Field(
        default=None, description="null removes the limit."
    )
    rate_limit_per_day: RateLimit | None = Field(
        default=None, description="null removes the limit."
    )
    token_budget: TokenBudget | None = Field(default=None, description="null removes the budget.")
    allowed_cidrs: AllowedCidrs | None = Field(
        default=None, description="Replaces the networks; [] for anywhere."
    )

    @model_validator(mode="after")
    def _check_given_fields(self) -> KeyPatch:
        if not self.model_fields_set:
            raise ValueError(f"a patch must set at least one of: {', '.join(PATCHABLE_FIELDS)}")
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be null: a key always has a name")
        if "scopes" in self.model_fields_set and self.scopes is None:
            raise ValueError("scopes cannot be null: send [] to remove every scope")
        if "allowed_cidrs" in self.model_fields_set and self.allowed_cidrs is None:
            raise ValueError("allowed_cidrs cannot be null: send [] to allow every network")
        return self

    @model_serializer(mode="wrap")
    def _given_fields_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        return {name: value for name, value in dumped.items() if name in self.model_fields_set}

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # The serializer above hides the fields from pydantic; the output shape is the input's.
        if handler.mode == "serialization":
            # The output shape is the input's, written out whole: its nested models (the
            # token budget) inlined, as this document's $defs are not the caller's.
            return _inline_refs(cls.model_json_schema(mode="validation"))
        schema = handler(core_schema)
        # As the validator says: at least one field; name, scopes, networks never null.
        schema["minProperties"] = 1
        for never_null in ("name", "scopes", "allowed_cidrs"):
            prop = schema["properties"][never_null]
            prop.update(next(b for b in prop.pop("anyOf") if b.get("type") != "null"))
            prop.pop("default", None)
        return schema


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


PATCHABLE_FIELDS: Final = (
    "name",
    "description",
    "scopes",
    "rate_limit_per_hour",
    "expires_at",
    "rate_limit_per_minute",
    "rate_limit_per_day",
    "token_budget",
    "allowed_cidrs",
)

# The type of each patchable field's value, for readers of KeyUpdated's before/after.
_FIELD_ADAPTERS: Final[dict[str, TypeAdapter[Any]]] = {
    "name": TypeAdapter(KeyName),
    "description": TypeAdapter(KeyDescription | None),
    "scopes": TypeAdapter(Scopes),
    "rate_limit_per_hour": TypeAdapter(RateLimitPerHour | None),
    "expires_at": TypeAdapter(UtcDatetime | None),
    "rate_limit_per_minute": TypeAdapter(RateLimit | None),
    "rate_limit_per_day": TypeAdapter(RateLimit | None),
    "token_budget": TypeAdapter(TokenBudget | None),
    "allowed_cidrs": TypeAdapter(AllowedCidrs),
}


def validate_field_value(field: str, value: Any) -> Any:
    """Validate one attribute value by its field name (raises ValidationError)."""
    return _FIELD_ADAPTERS[field].validate_python(value)


def dump_field_value(field: str, value: Any) -> Any:
    """The JSON-ready form of one attribute value (times as ``...123456Z``)."""
    return _FIELD_ADAPTERS[field].dump_python(value, mode="json")
