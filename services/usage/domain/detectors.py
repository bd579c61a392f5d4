"""The detectors' rules, as pure functions of what was seen and what was expected.

Each returns a `Finding` (or None): kind, severity, the window it covers, observed vs
expected, and the evidence. `alerts.py` turns a finding into the Alert contract. The
defaults are those of docs/usage-detectors.md.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from datetime import UTC, datetime
from typing import Any

from contracts import AlertKind, Severity, format_utc
from services.usage.domain.baseline import Baseline, SpikeThresholds

MINUTE = 60


@dataclasses.dataclass(frozen=True, slots=True)
class DetectorConfig:
    lateness_s: float = 120.0
    spike_alpha: float = 0.05
    spike_deviations: float = 6.0
    spike_ratio: float = 3.0
    spike_min_volume: int = 100
    spike_warmup_minutes: int = 30
    spike_cold_volume: int = 600
    spike_critical_factor: float = 10.0
    auth_failure_burst: int = 20
    new_network_min_history_s: float = 24 * 3600.0
    new_network_min_active_minutes: int = 10
    new_network_max_known: int = 50
    dormant_s: float = 30 * 86400.0
    disabled_grace_s: float = 5.0
    unused_s: float = 30 * 86400.0
    cooldown_s: float = 3600.0


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    key_id: str
    account_id: str
    kind: AlertKind
    severity: Severity
    window_from: float
    window_to: float
    observed: int | float
    expected: int | float
    evidence: dict[str, Any]
    bucket: float
    """Start of the cooldown window: one alert per (key, kind, severity, bucket)."""
    scope: str = ""
    """What else tells alerts of one kind apart in a bucket (a canary's source network)."""


def _cold_thresholds(volume: int, factor: float, baseline: Baseline) -> SpikeThresholds:
    return SpikeThresholds(volume, int(volume * factor), baseline.mean, established=False)


@functools.lru_cache(maxsize=16)
def _fresh_thresholds(volume: int, factor: float) -> SpikeThresholds:
    """The thresholds of a key with no closed minute yet (held by every such key's state:
    shared, not ~100 bytes a key)."""
    return _cold_thresholds(volume, factor, Baseline())


def spike_thresholds(baseline: Baseline, config: DetectorConfig) -> SpikeThresholds:
    """Warm keys: max(min volume, ratio x mean, mean + k deviations); cold keys (fewer
    active minutes than the warm-up) are judged against the cold-start volume alone."""
    if baseline.minutes < config.spike_warmup_minutes:
        if baseline.minutes == 0:  # a key's first minutes: one object for them all
            return _fresh_thresholds(config.spike_cold_volume, config.spike_critical_factor)
        return _cold_thresholds(config.spike_cold_volume, config.spike_critical_factor, baseline)
    mean = baseline.mean
    warning = math.ceil(
        max(
            config.spike_min_volume,
            config.spike_ratio * mean,
            mean + config.spike_deviations * baseline.deviation,
        )
    )
    critical = max(warning, math.ceil(config.spike_critical_factor * max(mean, 1.0)))
    critical = max(critical, int(config.spike_critical_factor * config.spike_min_volume))
    return SpikeThresholds(warning, critical, mean, established=True)


def iso(at: float | None) -> str | None:
    """An epoch time as the wire's UTC text (evidence is read by people)."""
    return None if at is None else format_utc(datetime.fromtimestamp(at, UTC))


def bucket_of(at: float, cooldown_s: float) -> float:
    return math.floor(at / cooldown_s) * cooldown_s


def spike_severity(count: int, thresholds: SpikeThresholds) -> Severity | None:
    """Counts only grow within a minute, so once passed, a threshold stays passed."""
    if count > thresholds.critical:
        return "critical"
    if count > thresholds.warning:
        return "warning"
    return None


def volume_spike(
    key_id: str,
    account_id: str,
    minute: int,
    count: int,
    severity: Severity,
    thresholds: SpikeThresholds,
    baseline: Baseline,
    config: DetectorConfig,
) -> Finding:
    limit = thresholds.critical if severity == "critical" else thresholds.warning
    start = minute * MINUTE
    return Finding(
        key_id,
        account_id,
        "volume_spike",
        severity,
        start,
        start + MINUTE,
        count,
        round(thresholds.expected, 1),
        {
            "requests_in_minute_at_least": count,
            "threshold": limit,
            "baseline_mean_per_minute": round(baseline.mean, 2),
            "baseline_deviation": round(baseline.deviation, 2),
            "baseline_active_minutes": baseline.minutes,
            "established_baseline": thresholds.established,
        },
        bucket_of(start, config.cooldown_s),
    )


def rate_limit_exceeded(
    key_id: str, account_id: str, minute: int, trailing: int, limit: int, config: DetectorConfig
) -> Finding:
    end = (minute + 1) * MINUTE
    return Finding(
        key_id,
        account_id,
        "rate_limit_exceeded",
        "warning",
        end - 3600,
        end,
        trailing,
        limit,
        {"requests_in_trailing_hour_at_least": trailing, "rate_limit_per_hour": limit},
        bucket_of(minute * MINUTE, config.cooldown_s),
    )


def auth_failure_burst(
    key_id: str, account_id: str, minute: int, failures: int, config: DetectorConfig
) -> Finding:
    start = minute * MINUTE
    return Finding(
        key_id,
        account_id,
        "auth_failure_burst",
        "warning",
        start,
        start + MINUTE,
        failures,
        config.auth_failure_burst,
        {"auth_failures_in_minute_at_least": failures, "statuses": [401, 403]},
        bucket_of(start, config.cooldown_s),
    )
