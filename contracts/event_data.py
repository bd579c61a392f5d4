"""The ``data`` payload of each event type on ``keys.events``.

Payloads hold what a reader needs to replay the change without asking the keys service,
and never a secret or a secret's hash: only the display prefix.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, field_serializer, model_validator

from contracts.base import ContractModel, UtcDatetime
from contracts.keys import (
    PATCHABLE_FIELDS,
    GraceEndReason,
    KeyAttributes,
    KeyPrefix,
    LeakAction,
    LeakSource,
    LeakUrl,
    Reason,
    dump_field_value,
    validate_field_value,
)


def _typed(side: str, field: str, value: Any) -> Any:
    try:
        return validate_field_value(field, value)
    except ValidationError as exc:
        raise ValueError(f"{side}.{field}: {exc.errors()[0]['msg']}") from None


class KeyCreatedData(KeyAttributes):
    """The attributes the key was created with, plus the prefix of its first secret."""

    prefix: KeyPrefix = Field(description="Display start of the secret, e.g. ig_live_Ab3d.")


class KeyUpdatedData(ContractModel):
    """Old and new value of each changed field, so history reads without a diff engine.

    Values are validated with the field's own type: ``expires_at`` comes back as a UTC
    datetime whether it was built in Python or read from JSON, so round trips are exact.
    """

    before: dict[str, Any] = Field(description="Changed fields and their previous values.")
    after: dict[str, Any] = Field(description="The same fields and their new values.")

    @model_validator(mode="before")
    @classmethod
    def _typed_values(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        typed = dict(raw)
        for side in ("before", "after"):
            values = raw.get(side)
            if isinstance(values, dict):
                unknown = sorted(set(values) - set(PATCHABLE_FIELDS))
                if unknown:
                    raise ValueError(
                        f"{side} names fields that cannot change: {', '.join(map(str, unknown))}"
                        f" (patchable: {', '.join(PATCHABLE_FIELDS)})"
                    )
                typed[side] = {f: _typed(side, f, v) for f, v in values.items()}
        return typed

    @model_validator(mode="after")
    def _same_changed_fields(self) -> KeyUpdatedData:
        if not self.after:
            raise ValueError("a KeyUpdated event must change at least one field")
        if set(self.before) != set(self.after):
            raise ValueError("before and after must name the same fields")
        unchanged = sorted(f for f in self.after if self.before[f] == self.after[f])
        if unchanged:
            raise ValueError(f"fields listed but not changed: {', '.join(unchanged)}")
        return self

    @field_serializer("before", "after", when_used="json")
    def _dump_typed(self, values: dict[str, Any]) -> dict[str, Any]:
        return {field: dump_field_value(field, value) for field, value in values.items()}


class KeyDisabledData(ContractModel):
    reason: Reason = Field(description="Why the key was disabled (1..500 characters).")


class KeyEnabledData(ContractModel):
    reason: Reason | None = Field(default=None, description="Why the key was re-enabled.")


class KeyRotatedData(ContractModel):
    """A new secret replaced the old one; the old may keep working until the grace end."""

    prefix: KeyPrefix = Field(description="Display start of the new secret.")
    previous_prefix: KeyPrefix = Field(description="Display start of the replaced secret.")
    grace_period_ends_at: UtcDatetime | None = Field(
        default=None, description="Until when the old secret still verifies; null: not at all."
    )
    end_grace_when_quiet_seconds: int | None = Field(
        default=None,
        ge=1,
        description="The grace period ends early once no verification has matched the old"
        " secret for this long (KeyGracePeriodEnded); null: it runs to grace_period_ends_at.",
    )

    @model_validator(mode="after")
    def _new_prefix(self) -> KeyRotatedData:
        if self.prefix == self.previous_prefix:
            raise ValueError("a rotation must produce a new prefix")
        if self.end_grace_when_quiet_seconds is not None and self.grace_period_ends_at is None:
            raise ValueError("end_grace_when_quiet_seconds needs a grace period")
        return self


class KeyGracePeriodEndedData(ContractModel):
    """The old secret of a rotation stopped working before grace_period_ends_at, and why."""

    reason: GraceEndReason = Field(
        description="old_secret_quiet: no verification matched the old secret for"
        " quiet_seconds (the rotation's end_grace_when_quiet_seconds)."
    )
    ended_at: UtcDatetime = Field(description="When the old secret stopped verifying.")
    last_used_at: UtcDatetime | None = Field(
        default=None,
        description="The old secret's last use after the rotation, across every verifier;"
        " null: not used since the rotation.",
    )
    quiet_seconds: int = Field(ge=1, description="The quiet time the rotation asked for.")
    previous_prefix: KeyPrefix = Field(description="Display start of the secret that stopped.")
    grace_period_ends_at: UtcDatetime = Field(
        description="When the grace period would have ended otherwise (after ended_at)."
    )


class KeyRevealedData(ContractModel):
    """Empty on purpose: the event records that a reveal happened, never what was shown."""


class KeyRevokedData(ContractModel):
    reason: Reason | None = Field(default=None, description="Why the key was revoked.")


class KeyExpiredData(ContractModel):
    expires_at: UtcDatetime = Field(description="The expiry time that was reached.")


class KeyReportedLeakedData(ContractModel):
    """Someone reported the key's secret as leaked; never the secret. Appended before the
    KeyDisabled or KeyRevoked that the report caused, in the same transaction."""

    source: LeakSource = Field(description="Who reported it: github, public, a scanner's name.")
    url: LeakUrl | None = Field(default=None, description="Where the secret was found, if known.")
    action: LeakAction = Field(
        description="What the report did: quarantined (disabled, reason reported_leaked),"
        " revoked, or none (the key was already out of use, or a canary)."
    )
