"""What the usage service's use cases share: the pool, the caches, the rules in force."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from services.usage.app.activity_cache import ActivityCache
from services.usage.app.directory import KeyDirectory
from services.usage.domain.containment import ContainmentPolicy
from services.usage.domain.detectors import DetectorConfig
from services.usage.domain.recent_ids import SharedIds


@dataclasses.dataclass
class UsageContext:
    pool: Callable[[], Any]
    directory: KeyDirectory
    cache: ActivityCache
    config: DetectorConfig
    policy: ContainmentPolicy
    dedup_horizon_minutes: int
    dedup_memory_ids: int = 1_000_000
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    """Held by whatever reads or changes the caches across an await (a batch of records,
    a batch of key events, an eviction), so they never see each other half-done."""
    on_alerts: Callable[[], None] = lambda: None
    """Called after a commit that stored new alerts (wakes the outbox)."""
    seen_ids: SharedIds = dataclasses.field(default_factory=SharedIds)
    """The record fingerprints of the process's dedup memories (the ingest's and, where
    one process runs both (USAGE_ROLE=all), the limit counter's: one entry for an id both
    hold)."""
    key_expiring_days: int = 7
    """key_expiring lead time of an account that set none (USAGE_KEY_EXPIRING_DAYS)."""
