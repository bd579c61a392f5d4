"""Kafka entrypoint: each key's last use, learned from `usage.records` (the authority: the
gateways publish every request there), within a batch or so of the request.

The topic may carry tens of thousands of records a second, so a record is reduced to the
four fields a last use needs, through a fast path for the shape gateways write (orjson,
canonical uuid, ISO time) with the contract's own field types as the judge of anything
else. A record that cannot say which key it used, when, or with what outcome is a dead
letter; one about a key this service does not hold for that account is ignored.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field

from contracts import USAGE_RECORDS, AccountId, UsageRecord
from contracts.usage import EARLIEST_USAGE_TIME, LATEST_USAGE_TIME, SecretMatched, UsageTime
from servicekit.consumer import Received, Subscription
from services.keys.adapters import queries
from services.keys.app.activity import Use, latest_uses
from services.keys.app.context import KeysContext

GROUP_ID = "keys-last-used"
_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_SECRETS: Final = (None, "current", "previous")
_TIME: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)\Z")


class _UseFields(BaseModel):
    """The fields of `UsageRecord` a last use needs, with the contract's own types."""

    model_config = ConfigDict(extra="ignore", frozen=True, title="UsageRecord")

    key_id: UUID
    account_id: AccountId
    occurred_at: UsageTime
    status_code: int = Field(ge=100, le=599)
    secret: SecretMatched | None = None


def decode_use(raw: bytes) -> Use:
    """The record's use; raises ValueError when it cannot say which key, when, how."""
    fast = _fast(raw)
    if fast is not None:
        return fast
    fields = _UseFields.model_validate_json(raw)  # the contract's verdict on the rest
    return Use(
        str(fields.key_id), fields.account_id, fields.occurred_at, fields.status_code, fields.secret
    )


def _fast(raw: bytes) -> Use | None:
    """The plain shape (a strict subset of what the contract accepts), or None."""
    try:
        d = orjson.loads(raw)
        key_id, account_id = d["key_id"], d["account_id"]
        occurred_at, status = d["occurred_at"], d["status_code"]
        secret = d.get("secret")
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not (
        type(key_id) is str
        and _UUID.match(key_id)
        and type(account_id) is str
        and 0 < len(account_id) <= 64
        and type(status) is int
        and 100 <= status <= 599
        and type(occurred_at) is str
        and _TIME.match(occurred_at)
        and secret in _SECRETS
    ):
        return None
    try:
        at = datetime.fromisoformat(occurred_at)
        if not EARLIEST_USAGE_TIME <= at < LATEST_USAGE_TIME:
            return None  # a time the contract refuses: it says why
        return Use(key_id, account_id, at, status, secret)
    except (ValueError, OverflowError):  # beyond the times there are in UTC, too
        return None  # e.g. a 31st of February: the contract says why


def last_use_subscription(ctx: KeysContext) -> Subscription[Use]:
    """A consumer group of its own: every record once, offsets committed after the write."""

    async def record(batch: list[Received[Use]]) -> None:
        uses = [item.message for item in batch]
        await queries.record_last_used(ctx.pool(), latest_uses(uses))
        # A gateway's use of a rotated-out secret keeps its grace period going (app/grace.py).
        await queries.record_previous_secret_used(ctx.pool(), latest_uses(uses, True))

    return Subscription(
        topic=USAGE_RECORDS,
        group_id=GROUP_ID,
        decode=decode_use,
        handle=record,
        payload=UsageRecord,
        description="Each request made with a key: when each key was last used.",
        max_records=5000,
        batch_timeout_ms=100,
        title=f"{USAGE_RECORDS}:last-use",
    )
