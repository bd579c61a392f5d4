"""The usage service's settings (environment variables; see servicekit.settings).

Every detector default is documented in docs/usage-detectors.md; the names here are the
environment variables (upper case) that override them.
"""

from __future__ import annotations

import os
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from contracts import KEYS_EVENTS, USAGE_ALERTS, USAGE_LIMITS, USAGE_RECORDS
from servicekit.settings import ServiceSettings
from services.usage.domain.containment import ContainmentPolicy
from services.usage.domain.detectors import DetectorConfig


def _default_keys_url() -> str:
    # The local stack moves the keys service with KEYS_HTTP_PORT; follow it.
    return f"http://127.0.0.1:{os.environ.get('KEYS_HTTP_PORT', '8000')}"


class UsageSettings(ServiceSettings):
    service_name: ClassVar[str] = "usage"
    default_http_port: ClassVar[int] = 8002

    # --- what this process runs -------------------------------------------------------
    usage_role: Literal["all", "ingest", "limits"] = Field(
        "all",
        description="ingest: the analytic ingest, detectors, alerts, webhooks and the HTTP API;"
        " limits: the limit counter and its publisher (docs/limits.md); all: both in one"
        " process. `make up` and docker-compose run one process of each (two cores, and"
        " enforcement never waits behind the ingest).",
    )

    # --- where it reads ---------------------------------------------------------------
    usage_consumer_group: str = Field(
        "usage", min_length=1, description="Consumer group of the ingest's subscriptions."
    )
    usage_records_topic: str = Field(
        USAGE_RECORDS, min_length=1, description="Topic of usage records (tests and benchmarks)."
    )
    usage_keys_events_topic: str = Field(
        KEYS_EVENTS, min_length=1, description="Topic of key events (tests and benchmarks)."
    )
    usage_batch_max_records: int = Field(5000, ge=1, le=100_000)

    # --- enforced limits (docs/limits.md) ---------------------------------------------
    usage_limits_consumer_group: str = Field(
        "usage-limits",
        min_length=1,
        description="Consumer group of the limit counter (records and key events).",
    )
    usage_limits_records_topic: str = Field(
        "",
        description="Topic the limit counter reads; empty: the records topic (benchmarks"
        " point the analytic ingest elsewhere to measure the counter alone).",
    )
    usage_limits_topic: str = Field(
        USAGE_LIMITS, min_length=1, description="Topic of limit states (tests and benchmarks)."
    )
    usage_limits_batch_max_records: int = Field(5000, ge=1, le=100_000)
    usage_limits_refresh_seconds: float = Field(
        1.0, gt=0, le=60, description="A clear key's moved counts are sent at most this often."
    )
    usage_limits_dedup_horizon_minutes: int = Field(15, ge=1, le=24 * 60)
    usage_limits_dedup_max_ids: int = Field(
        500_000, ge=1000, description="Record ids kept per partition to recognise re-sent ones."
    )

    # --- event time, dedup, caches ------------------------------------------------------
    usage_lateness_seconds: int = Field(120, ge=0, le=3600)
    usage_dedup_horizon_minutes: int = Field(15, ge=1, le=24 * 60)
    usage_dedup_memory_ids: int = Field(
        1_000_000,
        ge=1000,
        description="Record ids held in memory to catch a record sent twice (~85 B each).",
    )
    usage_idle_key_eviction_seconds: float = Field(900.0, gt=0)
    usage_directory_follow_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often a process takes the key rows other usage processes stored"
        " (the keys.events partitions it does not read).",
    )
    usage_caller_cache_seconds: float = Field(
        30.0, gt=0, le=600, description="How long a caller's whoami answer is reused."
    )
    keys_service_url: str = Field(
        default_factory=_default_keys_url,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="Base URL of the keys service, for GET /v1/whoami.",
    )

    # --- detectors ------------------------------------------------------------------------
    usage_spike_alpha: float = Field(0.05, gt=0, lt=1)
    usage_spike_deviations: float = Field(6.0, gt=0)
    usage_spike_ratio: float = Field(3.0, ge=1)
    usage_spike_min_volume: int = Field(100, ge=1)
    usage_spike_warmup_minutes: int = Field(30, ge=1)
    usage_spike_cold_volume: int = Field(600, ge=1)
    usage_spike_critical_factor: float = Field(10.0, gt=1)
    usage_auth_failure_burst: int = Field(20, ge=1)
    usage_new_network_min_history_hours: float = Field(24.0, ge=0)
    usage_new_network_min_active_minutes: int = Field(10, ge=0)
    usage_new_network_max_known: int = Field(50, ge=1)
    usage_dormant_days: float = Field(30.0, gt=0)
    usage_disabled_grace_seconds: float = Field(5.0, ge=0)
    usage_unused_key_days: float = Field(30.0, gt=0)
    usage_unused_key_scan_seconds: float = Field(3600.0, gt=0)
    usage_key_expiring_days: int = Field(
        7,
        ge=1,
        le=365,
        description="Days before expires_at a key_expiring warning is raised (then again 1 day"
        " before), for an account that set none (PUT /v1/settings/alerts).",
    )
    usage_warning_scan_seconds: float = Field(
        60.0,
        gt=0,
        description="How often expiring keys and ending grace periods are looked for (and once"
        " at start).",
    )
    usage_cooldown_minutes: int = Field(60, ge=1, le=7 * 24 * 60)

    # --- webhooks (docs/webhooks.md) ------------------------------------------------------
    usage_webhooks_consumer_group: str = Field(
        "usage-webhooks", min_length=1, description="Consumer group reading usage.alerts."
    )
    usage_webhooks_alerts_topic: str = Field(
        USAGE_ALERTS, min_length=1, description="Topic of the alerts delivered (benchmarks)."
    )
    usage_webhooks_allow_http: bool = Field(
        False, description="Accept http:// webhook URLs (tests only; production: https only)."
    )
    usage_webhooks_allow_private: bool = Field(
        False,
        description="Send to private, loopback and link-local addresses (tests only).",
    )
    usage_webhooks_backoff_base_seconds: float = Field(5.0, gt=0, le=3600)
    usage_webhooks_backoff_cap_seconds: float = Field(3600.0, gt=0, le=86400)
    usage_webhooks_give_up_seconds: float = Field(
        86400.0, gt=0, description="A delivery is tried this long, a failing webhook kept."
    )
    usage_webhooks_timeout_seconds: float = Field(10.0, gt=0, le=60)
    usage_webhooks_poll_seconds: float = Field(1.0, gt=0, le=60)
    usage_webhooks_max_per_account: int = Field(20, ge=1, le=1000)

    # --- containment ------------------------------------------------------------------
    usage_containment: str = Field(
        "",
        description="kind:min_severity pairs, e.g. disabled_key_in_use:critical; empty: off.",
    )

    @field_validator("usage_containment")
    @classmethod
    def _policy(cls, value: str) -> str:
        ContainmentPolicy.parse(value)  # raises ValueError naming the bad pair
        return value

    @property
    def containment(self) -> ContainmentPolicy:
        return ContainmentPolicy.parse(self.usage_containment)

    @property
    def detectors(self) -> DetectorConfig:
        return DetectorConfig(
            lateness_s=self.usage_lateness_seconds,
            spike_alpha=self.usage_spike_alpha,
            spike_deviations=self.usage_spike_deviations,
            spike_ratio=self.usage_spike_ratio,
            spike_min_volume=self.usage_spike_min_volume,
            spike_warmup_minutes=self.usage_spike_warmup_minutes,
            spike_cold_volume=self.usage_spike_cold_volume,
            spike_critical_factor=self.usage_spike_critical_factor,
            auth_failure_burst=self.usage_auth_failure_burst,
            new_network_min_history_s=self.usage_new_network_min_history_hours * 3600,
            new_network_min_active_minutes=self.usage_new_network_min_active_minutes,
            new_network_max_known=self.usage_new_network_max_known,
            dormant_s=self.usage_dormant_days * 86400,
            disabled_grace_s=self.usage_disabled_grace_seconds,
            unused_s=self.usage_unused_key_days * 86400,
            cooldown_s=self.usage_cooldown_minutes * 60,
        )
