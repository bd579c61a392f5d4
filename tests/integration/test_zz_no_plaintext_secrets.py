"""After every other scenario has run (this file sorts last): no plaintext secret anywhere.

Every topic from its first offset, every service log and a `pg_dump` of each service's
database are searched with the secret scanner's regex (docs/secret-scanning.md); a match
that is also a well-formed key (valid checksum) is a leak.
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

from contracts import ALL_TOPICS
from devstack import paths
from services.keys.domain.secret import SECRET_PATTERN, is_well_formed
from tests.support.stack import Stack

pytestmark = pytest.mark.stack


def _leaks(text: str) -> list[str]:
    return sorted({m for m in SECRET_PATTERN.findall(text) if is_well_formed(m)})


async def _topic_text(bootstrap: str, topic: str) -> str:
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


async def test_no_topic_holds_a_plaintext_secret(stack: Stack) -> None:
    found = {topic: _leaks(await _topic_text(stack.kafka, topic)) for topic in ALL_TOPICS}
    assert {t: s for t, s in found.items() if s} == {}


def test_no_service_log_holds_a_plaintext_secret() -> None:
    logs = sorted(paths.LOGS.glob("*.log"))
    assert logs, "the services write logs under .run/logs"
    found = {log.name: _leaks(log.read_text(errors="replace")) for log in logs}
    assert {name: s for name, s in found.items() if s} == {}


def _pg_dump() -> str:
    found = shutil.which("pg_dump")
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))
    if candidates:
        return str(candidates[-1])
    if found:
        return found
    pytest.fail("pg_dump is needed to scan the databases")


async def test_no_database_holds_a_plaintext_secret(stack: Stack) -> None:
    dumps = {}
    for service in ("keys", "audit", "usage"):
        done = await asyncio.to_thread(
            subprocess.run,
            [_pg_dump(), "--data-only", stack.database(service)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ},
        )
        assert "COPY" in done.stdout or service != "keys", "the keys database dump holds data"
        dumps[service] = _leaks(done.stdout)
    assert {s: leaks for s, leaks in dumps.items() if leaks} == {}
