"""Kafka topic and header names: pinned by INTERFACE.md, spelled once here."""

from __future__ import annotations

from typing import Final

KEYS_COMMANDS: Final = "keys.commands"
KEYS_COMMAND_RESULTS: Final = "keys.command-results"
KEYS_EVENTS: Final = "keys.events"
USAGE_RECORDS: Final = "usage.records"
USAGE_ALERTS: Final = "usage.alerts"
USAGE_LIMITS: Final = "usage.limits"
"""Each key's limit state (contracts.limits.LimitState); compacted: the latest per key."""


def dlq(topic: str) -> str:
    """The dead-letter topic of ``topic``: where messages that cannot be processed go."""
    return f"{topic}.dlq"


PRIMARY_TOPICS: Final = (
    KEYS_COMMANDS,
    KEYS_COMMAND_RESULTS,
    KEYS_EVENTS,
    USAGE_RECORDS,
    USAGE_ALERTS,
    USAGE_LIMITS,
)
COMPACTED_TOPICS: Final = frozenset({USAGE_LIMITS})
"""Topics whose latest message per key is the state (cleanup.policy=compact)."""
ALL_TOPICS: Final = PRIMARY_TOPICS + tuple(dlq(topic) for topic in PRIMARY_TOPICS)
MIN_PARTITIONS: Final = 3
"""Each topic has at least this many partitions, so per-key order is tested for real."""

# A dead letter keeps the original bytes as its value; these headers say why and whence.
DLQ_ERROR_HEADER: Final = "dlq.error"
DLQ_SOURCE_TOPIC_HEADER: Final = "dlq.source.topic"
DLQ_SOURCE_PARTITION_HEADER: Final = "dlq.source.partition"
DLQ_SOURCE_OFFSET_HEADER: Final = "dlq.source.offset"
DLQ_FAILED_AT_HEADER: Final = "dlq.failed_at"
DLQ_CONSUMER_GROUP_HEADER: Final = "dlq.consumer_group"
"""Which consumer group refused it: a topic read by two services may dead-letter twice."""

# Events carry these so a reader can route or skip without parsing the body.
EVENT_TYPE_HEADER: Final = "event_type"
EVENT_ID_HEADER: Final = "event_id"
SCHEMA_VERSION_HEADER: Final = "schema_version"
