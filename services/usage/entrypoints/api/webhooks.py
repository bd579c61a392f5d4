"""`/v1/webhooks`: where the account's alerts are posted, signed, and how each went; a
webhook disabled after a day of failures is enabled again here. Scope keys:manage; a
webhook of another account answers 404, as an unknown one does."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from contracts import SCOPE_KEYS_MANAGE
from servicekit.access import caller_with, from_state
from servicekit.callers import Caller
from servicekit.errors import ApiError
from servicekit.openapi import AUTHENTICATED, BAD_CURSOR, NOT_FOUND, problems, refusal
from servicekit.paging import cursor_query
from services.usage.adapters import webhook_store
from services.usage.app.webhook_registry import TooManyWebhooks, WebhookRegistry
from services.usage.domain.destinations import UnsafeDestination
from services.usage.entrypoints.paging import (
    ALERT_CURSOR,
    Limit,
    decode_alert_cursor,
    encode_alert_cursor,
)
from services.usage.entrypoints.webhook_schemas import (
    CreatedWebhook,
    Delivery,
    DeliveryList,
    NewWebhook,
    Webhook,
    WebhookList,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
Registry = Annotated[WebhookRegistry, Depends(from_state("webhooks"))]
Manager = Annotated[Caller, Depends(caller_with(SCOPE_KEYS_MANAGE))]
WEBHOOK_SHAPE = "`<created_at in microseconds since 1970>.<id>` of its last webhook"
DELIVERY_SHAPE = "`<created_at in microseconds since 1970>.<alert_id>` of its last delivery"
URL_REFUSED = refusal(
    422, "The URL may not be used: not https, or not a public address.", "url_invalid"
)
TOO_MANY = refusal(409, "The account has as many webhooks as it may have.", "too_many_webhooks")


def _url_refused(exc: UnsafeDestination) -> ApiError:
    return ApiError(
        422, "url_invalid", str(exc), extra={"details": [{"field": "url", "problem": str(exc)}]}
    )


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["webhook_id"],
        "status": "disabled" if row["disabled_at"] else "active",
        **{k: v for k, v in row.items() if k != "webhook_id"},
    }


@router.post(
    "",
    status_code=201,
    response_model=CreatedWebhook,
    summary="Post the account's alerts to a URL, signed; the secret is in the answer",
    responses=problems(*AUTHENTICATED, URL_REFUSED, TOO_MANY),
)
async def create_webhook(body: NewWebhook, registry: Registry, caller: Manager) -> CreatedWebhook:
    try:
        row, secret = await registry.create(
            caller.account_id, body.url, body.kinds, body.min_severity
        )
    except UnsafeDestination as exc:
        raise _url_refused(exc) from None
    except TooManyWebhooks as exc:
        raise ApiError(409, "too_many_webhooks", str(exc)) from None
    return CreatedWebhook(**_view(row), secret=secret)


@router.get(
    "",
    response_model=WebhookList,
    summary="The account's webhooks, newest first",
    responses=problems(*AUTHENTICATED, BAD_CURSOR),
)
async def list_webhooks(
    registry: Registry,
    caller: Manager,
    limit: Limit = 100,
    cursor: Annotated[str | None, cursor_query(ALERT_CURSOR, WEBHOOK_SHAPE)] = None,
) -> WebhookList:
    before = decode_alert_cursor(cursor) if cursor is not None else None
    rows = await webhook_store.listed(registry.pool(), caller.account_id, before, limit + 1)
    last = rows[limit - 1] if len(rows) > limit else None
    return WebhookList(
        items=[Webhook(**_view(row)) for row in rows[:limit]],
        next_cursor=None
        if last is None
        else encode_alert_cursor(last["created_at"], last["webhook_id"]),
    )


@router.get(
    "/{webhook_id}",
    response_model=Webhook,
    summary="One of the account's webhooks (without its secret)",
    responses=problems(*AUTHENTICATED, NOT_FOUND),
)
async def get_webhook(webhook_id: uuid.UUID, registry: Registry, caller: Manager) -> Webhook:
    found = await webhook_store.get(registry.pool(), caller.account_id, webhook_id)
    if found is None:
        raise ApiError(404, "not_found", "No such webhook in this account.")
    return Webhook(**_view(found))


@router.post(
    "/{webhook_id}/enable",
    response_model=Webhook,
    summary="Send to a disabled webhook again (alerts from now on; the same secret)",
    responses=problems(*AUTHENTICATED, NOT_FOUND, URL_REFUSED),
)
async def enable_webhook(webhook_id: uuid.UUID, registry: Registry, caller: Manager) -> Webhook:
    try:
        enabled = await registry.enable(caller.account_id, webhook_id)
    except UnsafeDestination as exc:
        raise _url_refused(exc) from None
    if enabled is None:
        raise ApiError(404, "not_found", "No such webhook in this account.")
    return Webhook(**_view(enabled))


@router.delete(
    "/{webhook_id}",
    status_code=204,
    response_class=Response,
    summary="Stop posting to this webhook; its deliveries are forgotten",
    responses=problems(*AUTHENTICATED, NOT_FOUND),
)
async def delete_webhook(webhook_id: uuid.UUID, registry: Registry, caller: Manager) -> Response:
    if not await webhook_store.delete(registry.pool(), caller.account_id, webhook_id):
        raise ApiError(404, "not_found", "No such webhook in this account.")
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=DeliveryList,
    summary="The webhook's deliveries, newest first: status, attempts, last error",
    responses=problems(*AUTHENTICATED, NOT_FOUND, BAD_CURSOR),
)
async def list_deliveries(
    webhook_id: uuid.UUID,
    registry: Registry,
    caller: Manager,
    limit: Limit = 100,
    cursor: Annotated[str | None, cursor_query(ALERT_CURSOR, DELIVERY_SHAPE)] = None,
) -> DeliveryList:
    before = decode_alert_cursor(cursor) if cursor is not None else None
    if not await webhook_store.exists(registry.pool(), caller.account_id, webhook_id):
        raise ApiError(404, "not_found", "No such webhook in this account.")
    rows = await webhook_store.deliveries(registry.pool(), webhook_id, before, limit + 1)
    last = rows[limit - 1] if len(rows) > limit else None
    return DeliveryList(
        items=[Delivery(**row) for row in rows[:limit]],
        next_cursor=None
        if last is None
        else encode_alert_cursor(last["created_at"], last["alert_id"]),
    )
