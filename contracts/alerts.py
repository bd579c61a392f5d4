"""Findings on ``usage.alerts``: behaviour of a key that a person should look at.

An alert states what was seen against what was expected, over which window, with the
evidence, so the reader can act on it without re-running the detection.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import ConfigDict, Field, JsonValue, model_validator

from contracts.base import AccountId, ContractModel, Text, UtcDatetime

AlertKind = Literal[
    "volume_spike",
    "rate_limit_exceeded",
    "new_source_network",
    "auth_failure_burst",
    "disabled_key_in_use",
    "dormant_key_reactivated",
    "unused_key",
    "key_reported_leaked",
    "canary_key_used",
    "key_expiring",
    "grace_period_ending",
    # Not about a key: a webhook of the account was disabled (docs/webhooks.md); its
    # key_id is the webhook's id.
    "webhook_disabled",
]
Severity = Literal["info", "warning", "critical"]


class AlertWindow(ContractModel):
    """The time range the observation covers; ``from`` on the wire, ``from_`` in Python."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    from_: UtcDatetime = Field(alias="from", description="Start of the window (inclusive).")
    to: UtcDatetime = Field(description="End of the window (exclusive).")

    @model_validator(mode="after")
    def _ordered(self) -> AlertWindow:
        if self.to < self.from_:
            raise ValueError("window ends before it starts")
        return self


class Alert(ContractModel):
    """One detected anomaly (or hygiene finding, like an unused key) about one key."""

    alert_id: UUID = Field(description="Unique id of the alert; consumers deduplicate on it.")
    key_id: UUID = Field(description="The key concerned; also the message key.")
    account_id: AccountId = Field(description="The account that owns the key.")
    kind: AlertKind = Field(description="Which detector fired.")
    severity: Severity = Field(description="How urgently a person should look.")
    detected_at: UtcDatetime = Field(description="When the detector fired (UTC).")
    window: AlertWindow = Field(description="The period the observation covers.")
    observed: int | float = Field(description="What was measured in the window.")
    expected: int | float = Field(description="The baseline or limit it was compared with.")
    evidence: dict[str, JsonValue] = Field(
        default_factory=dict, description="Detector-specific details (JSON values only)."
    )
    summary: Text = Field(
        min_length=1, max_length=500, description="One sentence a person can act on."
    )
