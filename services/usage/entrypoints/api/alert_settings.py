"""`/v1/settings/alerts`: the account's alert settings (how many days before a key
expires its first `key_expiring` warning is raised; the second is always 1 day before)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from contracts.base import NOT_A_BOOL
from servicekit.openapi import AUTHENTICATED, problems
from services.usage.adapters import grace_store
from services.usage.entrypoints.dependencies import Context, Manager

router = APIRouter(prefix="/v1/settings", tags=["settings"])


class AlertSettingsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key_expiring_days: Annotated[int, Field(ge=1, le=365), NOT_A_BOOL] = Field(
        description="Days before a key's expires_at its key_expiring warning is raised (a"
        " second one follows 1 day before).",
    )


class AlertSettings(AlertSettingsBody):
    default: bool = Field(description="True: the platform's default, the account set none.")


@router.get(
    "/alerts",
    response_model=AlertSettings,
    summary="The account's alert settings (scope keys:manage)",
    responses=problems(*AUTHENTICATED),
)
async def get_alert_settings(ctx: Context, caller: Manager) -> AlertSettings:
    days = await grace_store.expiry_warning_days(ctx.pool(), caller.account_id)
    if days is None:
        return AlertSettings(key_expiring_days=ctx.key_expiring_days, default=True)
    return AlertSettings(key_expiring_days=days, default=False)


@router.put(
    "/alerts",
    response_model=AlertSettings,
    summary="Change the account's alert settings (scope keys:manage)",
    responses=problems(*AUTHENTICATED),
)
async def put_alert_settings(
    body: AlertSettingsBody, ctx: Context, caller: Manager
) -> AlertSettings:
    await grace_store.set_expiry_warning_days(ctx.pool(), caller.account_id, body.key_expiring_days)
    return AlertSettings(key_expiring_days=body.key_expiring_days, default=False)
