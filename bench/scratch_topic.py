"""A topic of its own for one benchmark run, deleted afterwards (the broker auto-creates none)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code


@asynccontextmanager
async def scratch_topic(bootstrap: str, prefix: str, partitions: int) -> AsyncIterator[str]:
    """Yield a fresh `<prefix>.<random>` topic; a unique name keeps concurrent runs apart."""
    topic = f"{prefix}.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    await admin.start()
    try:
        created = await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)], timeout_ms=15_000
        )
        _raise_for_errors(created.topic_errors)
        try:
            yield topic
        finally:
            deleted = await admin.delete_topics([topic], timeout_ms=15_000)
            _raise_for_errors(deleted.topic_error_codes)
    finally:
        await admin.close()


def _raise_for_errors(topic_errors: list[tuple[Any, ...]]) -> None:
    """The admin client returns per-topic error codes instead of raising; raise them."""
    for topic, code, *_ in topic_errors:
        if code != 0:
            raise for_code(code)(f"topic {topic}")
