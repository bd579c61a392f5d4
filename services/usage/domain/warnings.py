"""Warnings ahead of a deadline a key's owner must act on: its expiry (`key_expiring`, N
days before and again 1 day before, N per account) and the end of a rotation's grace
period while clients still present the old secret (`grace_period_ending`, 1 hour before).

Pure arithmetic on epoch seconds. A warning's identity is its key, kind, deadline and
threshold (Finding.bucket and scope), so finding it again, after a restart or in another
process, is the same alert; a moved deadline (a new expires_at) is a new one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from contracts import format_utc as _format_utc
from contracts.usage import REFUSED_STATUSES
from services.usage.domain.detectors import Finding
from services.usage.domain.requests import Request

DAY: Final = 86400.0
DEFAULT_EXPIRY_WARNING_DAYS: Final = 7
LAST_EXPIRY_WARNING_DAYS: Final = 1
GRACE_WARNING_SECONDS: Final = 3600.0


def format_utc(at: float) -> str:
    return _format_utc(datetime.fromtimestamp(at, UTC))


def expiry_thresholds(days: int) -> tuple[int, ...]:
    """The days before expiry a warning is due, soonest last: (days, 1), or (1,)."""
    return tuple(sorted({days, LAST_EXPIRY_WARNING_DAYS}, reverse=True))


def key_expiring(
    key_id: str, account_id: str, expires_at: float, now: float, days: int
) -> Finding | None:
    """The warning due now for a key expiring at `expires_at`: of the thresholds already
    reached, the nearest to expiry (a key that expires in 12 hours warns once, at 1 day,
    not at 7 days too); None before the first threshold or once the key has expired."""
    left = expires_at - now
    if left <= 0:
        return None
    reached = [t for t in expiry_thresholds(days) if left <= t * DAY]
    if not reached:
        return None
    threshold = min(reached)
    return Finding(
        key_id=key_id,
        account_id=account_id,
        kind="key_expiring",
        severity="warning",
        window_from=expires_at - threshold * DAY,
        window_to=expires_at,
        observed=round(left / DAY, 2),
        expected=threshold,
        evidence={
            "expires_at": format_utc(expires_at),
            "threshold_days": threshold,
            "days_left": round(left / DAY, 2),
        },
        bucket=expires_at,
        scope=f"{threshold}d",
    )


def grace_period_ending(
    key_id: str,
    account_id: str,
    grace_period_ends_at: float,
    rotated_at: float,
    previous_secret_last_used_at: float | None,
    now: float,
) -> Finding | None:
    """Due in the last hour of a rotation's grace period, when the old secret was used
    after the rotation (its clients have not all moved to the new secret yet)."""
    left = grace_period_ends_at - now
    if not 0 < left <= GRACE_WARNING_SECONDS:
        return None
    used = previous_secret_last_used_at
    if used is None or used < rotated_at:
        return None
    return Finding(
        key_id=key_id,
        account_id=account_id,
        kind="grace_period_ending",
        severity="warning",
        window_from=rotated_at,
        window_to=grace_period_ends_at,
        observed=round(left),
        expected=GRACE_WARNING_SECONDS,
        evidence={
            "grace_period_ends_at": format_utc(grace_period_ends_at),
            "rotated_at": format_utc(rotated_at),
            "previous_secret_last_used_at": format_utc(used),
        },
        bucket=grace_period_ends_at,
    )


def previous_secret_uses(requests: Iterable[Request]) -> dict[str, float]:
    """The latest use of a rotated-out secret per key in a batch (refusals do not count)."""
    latest: dict[str, float] = {}
    for r in requests:
        if r.previous_secret and r.status_code not in REFUSED_STATUSES:
            latest[r.key_id] = max(r.at, latest.get(r.key_id, r.at))
    return latest
