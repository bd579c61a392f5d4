"""What the console's pages read: the signed-in account's keys from the key store, and the
audit and usage services' data through their APIs (as the signed-in person)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from servicekit.errors import ApiError
from services.keys.adapters import event_store, queries
from services.keys.app.limits import KeyLimits, reset_text
from services.keys.console import naming
from services.keys.console.backends import BackendError
from services.keys.console.caller import SignedIn
from services.keys.console.chart import RANGES, Chart, build_chart
from services.keys.console.context import Console
from services.keys.entrypoints.schemas import EventView, KeyView


@dataclass(frozen=True)
class KeyUsage:
    """A key as its page shows it: its last use as the usage service saw it too, the
    chart of the range, or why the chart cannot be shown."""

    key: KeyView
    chart: Chart | None
    error: str | None


async def key_or_404(console: Console, me: SignedIn, key_id: uuid.UUID) -> KeyView:
    """A key of the signed-in account; another account's key is as unknown as no key."""
    found = await queries.get_key(console.ctx.pool(), me.account_id, key_id)
    if found is None:
        raise ApiError(404, "not_found", f"No key {key_id} in this account.")
    return KeyView.of(*found)


LIMIT_LABELS = {
    "rate_limit_per_minute": "Requests per minute",
    "rate_limit_per_hour": "Requests per hour",
    "rate_limit_per_day": "Requests per day",
    "token_budget": "Token budget",
}


@dataclass(frozen=True)
class LimitShown:
    """One limit on a key's page: what its window allows and what is left of it now."""

    name: str
    label: str
    allowed: int
    remaining: int
    resets_at: str


@dataclass(frozen=True)
class KeyLimitsShown:
    rows: list[LimitShown]
    refused: str | None
    """rate_limited or budget_exhausted while the key is limited."""
    refused_by: str | None
    refused_until: str | None


def key_limits(console: Console, key: KeyView) -> KeyLimitsShown:
    """The key's limits as this process decides them now (the latest state from the usage
    service, plus what this process admitted since): counts nothing."""
    limits = KeyLimits.of(
        key.rate_limit_per_minute,
        key.rate_limit_per_hour,
        key.rate_limit_per_day,
        key.token_budget,
        key.allowed_cidrs,
    )
    seen = console.ctx.limits.peek(key.id, limits, datetime.now(UTC).timestamp())
    period = f" per {key.token_budget.period}" if key.token_budget else ""
    rows = [
        LimitShown(
            name,
            LIMIT_LABELS[name] + (period if name == "token_budget" else ""),
            allowed,
            remaining,
            reset_text(end),
        )
        for name, allowed, remaining, end in seen.windows
    ]
    if seen.refused is None:
        return KeyLimitsShown(rows, None, None, None)
    label = LIMIT_LABELS[seen.limit_name or "token_budget"]
    return KeyLimitsShown(rows, seen.refused, label, reset_text(seen.reset_at))


async def key_history(console: Console, key_id: uuid.UUID) -> list[EventView]:
    async with console.ctx.pool().acquire() as conn:
        return [EventView.of(e) for e in await event_store.stream_page(conn, key_id, 100, None)]


async def unused_keys(console: Console, me: SignedIn) -> list[KeyView]:
    rows = await queries.list_keys(console.ctx.pool(), me.account_id, 500, None, "active")
    return [view for view in (KeyView.of(*row) for row in rows) if unused(view)]


def unused(key: KeyView) -> str | None:
    """Why an active key counts as unused, or None."""
    if key.status != "active":
        return None
    if key.last_used_at is None:
        return "Never used"
    if datetime.now(UTC) - key.last_used_at > timedelta(days=naming.UNUSED_AFTER_DAYS):
        return f"Unused for {naming.UNUSED_AFTER_DAYS}+ days"
    return None


async def shown(read: Awaitable[dict[str, Any]]) -> tuple[dict[str, Any], str | None]:
    """A page of another service's data, or why it cannot be shown (the page still is).
    404 is an empty page: that service has not heard of the key yet."""
    try:
        return await read, None
    except BackendError as error:
        nothing: dict[str, Any] = {"items": [], "next_cursor": None}
        return nothing, None if error.status == 404 else str(error)


async def key_usage(console: Console, me: SignedIn, key: KeyView, range_name: str) -> KeyUsage:
    try:
        chart = await _usage_chart(console, me, key.id, range_name)
    except BackendError as error:
        return KeyUsage(key, None, str(error))
    return KeyUsage(key, chart, None)


async def _usage_chart(console: Console, me: SignedIn, key_id: uuid.UUID, range_name: str) -> Chart:
    """The chart of the range (the key's last use is the key service's own value)."""
    span, _, granularity = RANGES[range_name]
    now = datetime.now(UTC)
    try:
        usage = await console.backends.key_usage(
            me.session.access_key, key_id, now - span - timedelta(hours=6), now, granularity
        )
    except BackendError as error:
        if error.status != 404:
            raise
        usage = {"items": []}  # not yet known to the usage service
    try:
        return build_chart(range_name, now, usage["items"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BackendError(
            "The usage service answered with data the console cannot read."
        ) from None
