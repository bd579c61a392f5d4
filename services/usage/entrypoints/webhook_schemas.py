"""HTTP bodies of the webhooks API (for the OpenAPI document and the clients)."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts import AlertKind, Severity
from contracts.base import UtcDatetime
from services.usage.domain.destinations import MAX_URL_LENGTH


class NewWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="Where alerts are posted: https, on a public address.",
    )
    kinds: list[AlertKind] = Field(
        default_factory=list, max_length=50, description="Alert kinds sent; empty: every kind."
    )
    min_severity: Severity = Field("info", description="The least severe alert sent.")


class Webhook(BaseModel):
    id: UUID
    url: str
    kinds: list[AlertKind] = Field(description="Alert kinds sent; empty: every kind.")
    min_severity: Severity
    status: Literal["active", "disabled"] = Field(
        description="Disabled after failing every delivery for 24 h (with an alert)."
    )
    created_at: UtcDatetime
    failing_since: UtcDatetime | None = Field(
        description="First failed try since the last delivery that succeeded."
    )
    disabled_at: UtcDatetime | None


class CreatedWebhook(Webhook):
    secret: str = Field(
        description="Signing secret of the InstaGen-Signature header; shown this once."
    )


class WebhookList(BaseModel):
    items: list[Webhook]
    next_cursor: str | None


class Delivery(BaseModel):
    alert_id: UUID = Field(description="Also the InstaGen-Delivery-Id header, to dedupe on.")
    kind: AlertKind
    severity: Severity
    status: Literal["pending", "delivered", "failed"]
    attempts: int = Field(description="Tries so far.")
    created_at: UtcDatetime
    first_attempt_at: UtcDatetime | None
    last_attempt_at: UtcDatetime | None
    next_attempt_at: UtcDatetime | None = Field(description="The next try, while pending.")
    delivered_at: UtcDatetime | None
    last_status_code: int | None = Field(description="The receiver's last HTTP status.")
    last_error: str | None


class DeliveryList(BaseModel):
    items: list[Delivery]
    next_cursor: str | None
