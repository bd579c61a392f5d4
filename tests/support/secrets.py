"""Looking for plaintext secrets where none may be: topics, logs, metrics, database dumps.

A match of the secret scanner's regex (docs/secret-scanning.md) that is also a well-formed
key (valid checksum) is a leak.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.keys.domain.secret import SECRET_PATTERN, is_well_formed
from tests.support.stack import Stack


def leaks(text: str) -> list[str]:
    return sorted({m for m in SECRET_PATTERN.findall(text) if is_well_formed(m)})


async def topic_text(bootstrap: str, topic: str) -> str:
    """Every record of `topic` from its first offset: values and header values."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        client_id=f"secret-scan-{uuid.uuid4().hex[:6]}",
    )
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(topic, p) for p in cluster.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        chunks: list[str] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            for batch in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for record in batch:
                    chunks.append((record.value or b"").decode("utf-8", "replace"))
                    chunks.extend(v.decode("utf-8", "replace") for _, v in record.headers or ())
        return "\n".join(chunks)
    finally:
        await consumer.stop()


def _pg_dump() -> str:
    found = shutil.which("pg_dump")
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))
    if candidates:
        return str(candidates[-1])
    if found:
        return found
    pytest.fail("pg_dump is needed to scan the databases")


async def database_dump(stack: Stack, service: str) -> str:
    """`pg_dump --data-only` of one service's database."""
    done = await asyncio.to_thread(
        subprocess.run,
        [_pg_dump(), "--data-only", stack.database(service)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    )
    return done.stdout
