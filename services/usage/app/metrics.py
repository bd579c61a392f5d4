"""The usage service's own Prometheus metrics (at /metrics with servicekit's)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RECORDS_COUNTED = Counter(
    "instagen_usage_records_counted_total", "Usage records counted into the rollups"
)
RECORDS_DUPLICATE = Counter(
    "instagen_usage_records_duplicate_total",
    "Usage records not counted: their record_id was seen within the dedup horizon",
)
ALERTS_RAISED = Counter(
    "instagen_usage_alerts_raised_total", "New alerts stored", ["kind", "severity"]
)
CONTAINMENT_COMMANDS = Counter(
    "instagen_usage_containment_commands_total", "DisableKey commands stored for sending"
)
CACHED_KEYS = Gauge("instagen_usage_cached_keys", "Keys whose detector state is in memory")
DEDUP_IDS_HELD = Gauge(
    "instagen_usage_dedup_ids_held",
    "Record ids held in memory to catch a record sent twice (about 120 bytes each)",
)
LIMIT_RECORDS_COUNTED = Counter(
    "instagen_usage_limit_records_counted_total",
    "Usage records the limit counter counted (refusals without tokens and re-sent ones are not)",
)
LIMIT_STATE_CHANGES = Counter(
    "instagen_usage_limit_state_changes_total",
    "Changes of a key's limit state (clear, rate_limited, budget_exhausted) stored to send",
)
LIMIT_STATES_PUBLISHED = Counter(
    "instagen_usage_limit_states_published_total", "Limit states sent to usage.limits"
)
WEBHOOK_ATTEMPTS = Counter(
    "instagen_usage_webhook_attempts_total", "Webhook delivery attempts, by outcome", ["outcome"]
)
WEBHOOKS_DISABLED = Counter(
    "instagen_usage_webhooks_disabled_total", "Webhooks disabled after failing for too long"
)
