"""For the audit scenarios: streams of valid key events, and the audit log as stored."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from contracts import (
    KEYS_EVENTS,
    Actor,
    Event,
    KeyCreated,
    KeyCreatedData,
    KeyUpdated,
    KeyUpdatedData,
    event_headers,
)
from servicekit.kafka import KafkaProducer
from tests.support.processes import SERVICE, service_cli
from tests.support.stack import Stack
from tests.support.wait import wait_until

SCRIPT_ACTOR = Actor(type="service", id="audit-scenario", ip="198.51.100.7", user_agent="tests/1")
AUDIT = SERVICE["audit"]


@dataclass(frozen=True)
class Stream:
    account_id: str
    events: list[Event]

    @property
    def source_ids(self) -> set[str]:
        return {f"event:{e.event_id}" for e in self.events}


def key_stream(
    account_id: str, keys: int, per_key: int, start: datetime | None = None, step_ms: int = 1
) -> Stream:
    """`keys` keys, each created then renamed `per_key - 1` times, interleaved by key."""
    start = start or datetime.now(UTC)
    key_ids = [uuid.uuid4() for _ in range(keys)]
    base = 10**15 + uuid.uuid4().int % 10**12  # positions of our own, never the real ones
    events: list[Event] = []
    for version in range(1, per_key + 1):
        for k, key_id in enumerate(key_ids):
            common: dict[str, Any] = {
                "event_id": uuid.uuid4(),
                "key_id": key_id,
                "account_id": account_id,
                "stream_version": version,
                "position": base + len(events) + 1,
                "occurred_at": start + timedelta(milliseconds=step_ms * len(events)),
                "actor": SCRIPT_ACTOR,
                "correlation_id": f"scenario-{k}",
            }
            if version == 1:
                data = KeyCreatedData(name=f"key {k} v1", prefix="ig_test_Ab3d")
                events.append(KeyCreated(data=data, **common))
            else:
                before, after = f"key {k} v{version - 1}", f"key {k} v{version}"
                rename = KeyUpdatedData(before={"name": before}, after={"name": after})
                events.append(KeyUpdated(data=rename, **common))
    return Stream(account_id, events)


async def publish(producer: KafkaProducer, events: list[Event], chunk: int = 5000) -> None:
    """Onto keys.events, keyed by key id like the keys service does (per-key order)."""
    for i in range(0, len(events), chunk):
        await producer.send_many(
            KEYS_EVENTS,
            [
                (str(e.key_id).encode(), e.model_dump_json().encode(), event_headers(e))
                for e in events[i : i + chunk]
            ],
        )


async def chain_length(audit_db: asyncpg.Connection, account_id: str) -> int:
    seq = await audit_db.fetchval(
        "SELECT seq FROM audit_chain_heads WHERE account_id = $1", account_id
    )
    return int(seq or 0)


async def wait_for_records(
    audit_db: asyncpg.Connection, account_id: str, count: int, timeout: float = 60.0
) -> None:
    async def reached() -> bool:
        return await chain_length(audit_db, account_id) >= count

    await wait_until(reached, timeout=timeout, what=f"{count} audit records of {account_id}")


async def wait_for_checkpoint(
    audit_db: asyncpg.Connection, account_id: str, seq: int, timeout: float = 40.0
) -> None:
    async def signed() -> bool:
        found = await audit_db.fetchval(
            "SELECT max(seq) FROM audit_checkpoints WHERE account_id = $1", account_id
        )
        return (found or 0) >= seq

    await wait_until(signed, timeout=timeout, what=f"a checkpoint of {account_id} at {seq}")


def audit_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m services.audit.cli ARGS` with the audit service's environment."""
    return service_cli(stack, "audit", *args)


async def cli_verdict(stack: Stack, account_id: str) -> tuple[int, dict[str, Any]]:
    """(exit status, report) of `verify --account ... --json`."""
    done = await asyncio.to_thread(audit_cli, stack, "verify", "--account", account_id, "--json")
    reports = json.loads(done.stdout)
    assert len(reports) == 1, done.stdout + done.stderr
    report: dict[str, Any] = reports[0]
    return done.returncode, report


async def audit_get(client: httpx.AsyncClient, path: str, **params: Any) -> httpx.Response:
    """GET from the audit API, waiting out a 503 while the keys service (which vouches for
    the caller's key) restarts: other scenarios restart it."""

    async def answered() -> httpx.Response | None:
        response = await client.get(path, params=params)
        return None if response.status_code == 503 else response

    response = await wait_until(answered, timeout=60, interval=0.5, what=f"an answer to {path}")
    assert response is not None
    return response
