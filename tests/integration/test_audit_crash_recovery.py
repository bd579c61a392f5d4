"""A crash never loses nor doubles an audit record: the audit consumer is killed (SIGKILL)
in the middle of its batches three times while 20,000 events stream in, and at the end
the log holds each event exactly once, in a chain that verifies."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from servicekit.kafka import KafkaProducer
from tests.support.audit import (
    AUDIT,
    chain_length,
    cli_verdict,
    key_stream,
    publish,
    wait_for_records,
)
from tests.support.processes import restart_service
from tests.support.stack import Stack
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack
KEYS, PER_KEY = 2_000, 10  # 20,000 events
CRASHES = 3


async def test_three_crashes_mid_batch_during_a_stream_lose_and_double_nothing(
    stack: Stack, producer: KafkaProducer, db: dict[str, asyncpg.Connection]
) -> None:
    audit_db = db["audit"]
    stream = key_stream(f"crash-{uuid.uuid4().hex[:12]}", keys=KEYS, per_key=PER_KEY)
    total = len(stream.events)
    crashed_at: list[int] = []
    # One part of the stream per crash (and a last one after it), so each crash has new
    # events to land on however fast the restarted consumer catches up.
    part = -(-total // (CRASHES + 1))
    parts = [stream.events[i : i + part] for i in range(0, total, part)]
    try:
        for crash in range(CRASHES):
            before = await chain_length(audit_db, stream.account_id)
            await publish(producer, parts[crash])

            async def moved(before: int = before) -> bool:
                return await chain_length(audit_db, stream.account_id) > before

            # Kill as soon as a batch has landed: the next one is being written.
            await wait_until(moved, timeout=90, interval=0.02, what="the audit log to grow")
            AUDIT.process.kill()
            crashed_at.append(await chain_length(audit_db, stream.account_id))
            await restart_service(stack, "audit")
        for rest in parts[CRASHES:]:
            await publish(producer, rest)
        await wait_for_records(audit_db, stream.account_id, total, timeout=120)
    finally:
        await restart_service(stack, "audit")  # never leave the stack without its audit service

    assert all(0 < n < total for n in crashed_at), crashed_at
    rows = await audit_db.fetch(
        "SELECT source_id FROM audit_records WHERE account_id = $1", stream.account_id
    )
    source_ids = [r["source_id"] for r in rows]
    assert len(source_ids) == total
    assert set(source_ids) == stream.source_ids
    seqs = await audit_db.fetchval(
        "SELECT array_agg(seq ORDER BY seq) FROM audit_records WHERE account_id = $1",
        stream.account_id,
    )
    assert seqs == list(range(1, total + 1))
    status, report = await cli_verdict(stack, stream.account_id)
    assert status == 0 and report["valid"], report
