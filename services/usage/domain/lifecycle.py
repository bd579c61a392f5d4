"""Detectors about when and where a key is used, rather than how much: a new source
network, use of a key that is no longer active, a dormant key waking up, an unused key."""

from __future__ import annotations

from collections.abc import Sequence

from services.usage.domain.baseline import Baseline
from services.usage.domain.detectors import (
    MINUTE,
    DetectorConfig,
    Finding,
    bucket_of,
    iso,
)

DAY = 86400.0


def established(
    first_used_at: float | None, baseline: Baseline, at: float, c: DetectorConfig
) -> bool:
    """A key has a history worth comparing with once it has been used for a while."""
    return (
        first_used_at is not None
        and at - first_used_at >= c.new_network_min_history_s
        and baseline.minutes >= c.new_network_min_active_minutes
    )


def new_source_network(
    key_id: str,
    account_id: str,
    at: float,
    network: str,
    known: Sequence[str],
    first_used_at: float | None,
    config: DetectorConfig,
) -> Finding:
    start = int(at // MINUTE) * MINUTE
    return Finding(
        key_id,
        account_id,
        "new_source_network",
        "warning",
        start,
        start + MINUTE,
        1,
        0,
        {
            "network": network,
            "known_networks": sorted(known)[:20],
            "known_network_count": len(known),
            "used_since": iso(first_used_at),
        },
        bucket_of(start, config.cooldown_s),
    )


def disabled_key_in_use(
    key_id: str,
    account_id: str,
    at: float,
    status: str,
    since: float,
    status_code: int | None,
    network: str | None,
    config: DetectorConfig,
) -> Finding:
    start = int(at // MINUTE) * MINUTE
    return Finding(
        key_id,
        account_id,
        "disabled_key_in_use",
        "critical",
        start,
        start + MINUTE,
        1,
        0,
        {
            "key_status": status,
            "status_since": iso(since),
            "attempt_at": iso(at),
            "status_code": status_code,
            "network": network,
        },
        bucket_of(start, config.cooldown_s),
    )


def dormant_key_reactivated(
    key_id: str,
    account_id: str,
    at: float,
    idle_since: float,
    never_used: bool,
    network: str,
    config: DetectorConfig,
) -> Finding | None:
    if at - idle_since < config.dormant_s:
        return None
    return Finding(
        key_id,
        account_id,
        "dormant_key_reactivated",
        "warning",
        idle_since,
        at,
        round((at - idle_since) / DAY, 1),
        round(config.dormant_s / DAY, 1),
        {
            "idle_days": round((at - idle_since) / DAY, 1),
            "idle_since": iso(idle_since),
            "never_used_before": never_used,
            "network": network,
        },
        bucket_of(at, config.cooldown_s),
    )


def unused_key(
    key_id: str,
    account_id: str,
    now: float,
    created_at: float,
    last_used_at: float | None,
    config: DetectorConfig,
) -> Finding | None:
    """An active key nobody used for `unused_s`: one info alert per such period."""
    idle_since = last_used_at if last_used_at is not None else created_at
    if now - idle_since < config.unused_s or now - created_at < config.unused_s:
        return None
    return Finding(
        key_id,
        account_id,
        "unused_key",
        "info",
        idle_since,
        now,
        round((now - idle_since) / DAY, 1),
        round(config.unused_s / DAY, 1),
        {
            "idle_days": round((now - idle_since) / DAY, 1),
            "last_used_at": iso(last_used_at),
            "created_at": iso(created_at),
            "recommendation": "disable",
        },
        idle_since,  # one alert per idle stretch, however long it lasts
    )
