"""The usage service's own view of each key, folded from `keys.events`.

Only what detection, authorisation and the limit counter need: owner, environment, the
key's limits, status and since when, creation and expiry times. It never reads the keys
database.
"""

from __future__ import annotations

import dataclasses
import sys
from datetime import datetime

from contracts import (
    Event,
    KeyCreated,
    KeyDisabled,
    KeyEnabled,
    KeyExpired,
    KeyGracePeriodEnded,
    KeyRevoked,
    KeyRotated,
    KeyUpdated,
    TokenBudget,
)
from services.usage.domain.limits import KeyLimits

ACTIVE = "active"


@dataclasses.dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    account_id: str
    name: str | None
    environment: str | None
    rate_limit_per_hour: int | None
    status: str
    status_since: float
    """When the current status began (event time, epoch seconds)."""
    previous_status: str
    created_at: float | None
    """None when the key's KeyCreated was never seen (read from the middle of the topic)."""
    expires_at: float | None
    version: int
    """stream_version of the last event folded in: older or repeated events are skipped."""
    rate_limit_per_minute: int | None = None
    rate_limit_per_day: int | None = None
    token_budget: int | None = None
    token_budget_period: str | None = None
    """day or month (contracts.TokenBudget), with token_budget."""
    canary: bool = False
    """A decoy key: every use of it is a critical alert (canary_key_used)."""
    rotated_at: float | None = None
    grace_period_ends_at: float | None = None
    """Until when the secret the last rotation replaced still verifies; None: it does not."""

    @property
    def limits(self) -> KeyLimits:
        return KeyLimits(
            self.rate_limit_per_minute,
            self.rate_limit_per_hour,
            self.rate_limit_per_day,
            self.token_budget,
            self.token_budget_period,
        )

    def status_at(self, at: float) -> tuple[str, float]:
        """The status a request made at `at` met, and since when (expiry counts from
        expires_at itself, before the KeyExpired event is even appended)."""
        if at < self.status_since:
            return self.previous_status, float("-inf")  # the request came before the change
        if (
            self.expires_at is not None
            and at >= self.expires_at
            and self.status in (ACTIVE, "disabled")
        ):
            return "expired", self.expires_at
        return self.status, self.status_since


_LIMITS: dict[int | None, int | None] = {}
"""The hourly limits read so far: a few values shared by many keys."""


def shared_limit(limit: int | None) -> int | None:
    """One int object per distinct hourly limit in the process (a few values shared by
    many keys; ~28 bytes a key otherwise), up to 4,096 of them."""
    return _LIMITS.setdefault(limit, limit) if len(_LIMITS) < 4096 else limit


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def fold(current: KeyInfo | None, event: Event) -> KeyInfo | None:
    """The key after `event`; None when the event is already reflected (duplicate, older)."""
    if current is not None and event.stream_version <= current.version:
        return None
    at = event.occurred_at.timestamp()
    if isinstance(event, KeyCreated):
        data = event.data
        return KeyInfo(
            key_id=sys.intern(str(event.key_id)),  # shared with the usage caches
            account_id=sys.intern(event.account_id),
            name=data.name,
            environment=sys.intern(data.environment),
            rate_limit_per_hour=shared_limit(data.rate_limit_per_hour),
            status=ACTIVE,
            status_since=at,
            previous_status=ACTIVE,
            created_at=at,
            expires_at=_epoch(data.expires_at),
            version=event.stream_version,
            canary=data.canary,
            rate_limit_per_minute=data.rate_limit_per_minute,
            rate_limit_per_day=data.rate_limit_per_day,
            token_budget=data.token_budget.tokens if data.token_budget else None,
            token_budget_period=data.token_budget.period if data.token_budget else None,
        )
    base = current or KeyInfo(
        sys.intern(str(event.key_id)),
        sys.intern(event.account_id),
        None,
        None,
        None,
        ACTIVE,
        at,
        ACTIVE,
        None,
        None,
        0,
    )
    changes: dict[str, object] = {"version": event.stream_version}
    if isinstance(event, KeyUpdated):
        after = event.data.after
        if "rate_limit_per_hour" in after:
            changes["rate_limit_per_hour"] = shared_limit(after["rate_limit_per_hour"])
        for limit in ("rate_limit_per_minute", "rate_limit_per_day"):
            if limit in after:
                changes[limit] = after[limit]
        if "token_budget" in after:
            changes.update(_budget(after["token_budget"]))
        if "name" in after:
            changes["name"] = after["name"]
        if "expires_at" in after:
            changes["expires_at"] = _epoch(after["expires_at"])
    if isinstance(event, KeyRotated):
        changes["rotated_at"] = at
        changes["grace_period_ends_at"] = _epoch(event.data.grace_period_ends_at)
    if isinstance(event, KeyGracePeriodEnded):
        changes["grace_period_ends_at"] = None
    status = _status_after(event)
    if status is not None and status != base.status:
        changes.update(status=status, status_since=at, previous_status=base.status)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _budget(budget: TokenBudget | None) -> dict[str, object]:
    if budget is None:
        return {"token_budget": None, "token_budget_period": None}
    return {"token_budget": budget.tokens, "token_budget_period": budget.period}


def _status_after(event: Event) -> str | None:
    if isinstance(event, KeyDisabled):
        return "disabled"
    if isinstance(event, KeyEnabled):
        return ACTIVE
    if isinstance(event, KeyRevoked):
        return "revoked"
    if isinstance(event, KeyExpired):
        return "expired"
    return None
