"""Detectors about when and where a key is used, rather than how much: a new source
network, use of a key that is no longer active, a dormant key waking up, an unused key."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from contracts import KeyReportedLeaked
from services.usage.domain.baseline import Baseline
from services.usage.domain.detectors import (
    MINUTE,
    DetectorConfig,
    Finding,
    bucket_of,
    iso,
)
from services.usage.domain.keys import KeyInfo
from services.usage.domain.requests import Request

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


def key_reported_leaked(event: KeyReportedLeaked) -> Finding:
    """One critical alert per report (a report of a key already quarantined appends no
    event, so it raises nothing)."""
    at = event.occurred_at.timestamp()
    data = event.data
    return Finding(
        str(event.key_id),
        event.account_id,
        "key_reported_leaked",
        "critical",
        at,
        at,
        1,
        0,
        {
            "source": data.source,
            "url": data.url,
            "action": data.action,
            "reported_by": event.actor.id,
            "reported_at": iso(at),
        },
        at,
        str(event.event_id),
    )


def canary_uses(
    requests: Sequence[Request], key_of: Callable[[str], KeyInfo | None], config: DetectorConfig
) -> list[Finding]:
    """Every request made with a canary key is an intruder's: one critical alert per
    source network per cooldown window (the alert id names the network)."""
    findings = []
    for r in requests:
        key = key_of(r.key_id)
        if key is None or not key.canary:
            continue
        start = int(r.at // MINUTE) * MINUTE
        findings.append(
            Finding(
                r.key_id,
                r.account_id,
                "canary_key_used",
                "critical",
                start,
                start + MINUTE,
                1,
                0,
                {
                    "network": r.network,
                    "user_agent": r.user_agent,
                    "endpoint": r.endpoint,
                    "status_code": r.status_code,
                    "attempt_at": iso(r.at),
                },
                bucket_of(start, config.cooldown_s),
                r.network,
            )
        )
    return findings
