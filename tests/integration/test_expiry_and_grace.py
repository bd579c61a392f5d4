"""Expiry warnings and rotation that ends itself (issue 16, parts 2 and 3), on the real
broker and databases: a key about to expire is warned about once per threshold, whatever
the restarts; a rotation's old secret stops working on every verifier (two keys
processes and the Python gateway library) once its clients have been quiet for
`end_grace_when_quiet_seconds`, never while they still use it, and the history says why."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from instagen_gateway import UsageReporter, Verifier

from contracts import UsageRecord
from servicekit.kafka import KafkaProducer
from tests.support.accounts import Account
from tests.support.audit import audit_get
from tests.support.keys_processes import another_keys_instance
from tests.support.stack import Stack
from tests.support.usage import (
    UsageInstance,
    create_key,
    publish,
    scratch_topic,
    usage_instance,
)
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack
QUIET = 5


async def _alerts(db: asyncpg.Connection, key_id: str, kind: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT body FROM alerts WHERE key_id = $1 AND kind = $2", uuid.UUID(key_id), kind
    )
    return [json.loads(r["body"]) for r in rows]


async def _wait_alerts(db: asyncpg.Connection, key_id: str, kind: str) -> list[dict[str, Any]]:
    async def raised() -> list[dict[str, Any]]:
        return await _alerts(db, key_id, kind)

    return await wait_until(raised, timeout=60, what=f"a {kind} alert for {key_id}")


@contextlib.asynccontextmanager
async def scanning_usage(
    stack: Stack, log: Path
) -> AsyncIterator[tuple[UsageInstance, str, asyncpg.Connection]]:
    """A usage process of the test's own that looks for deadlines every second: the
    instance, the records topic it reads, and a connection to its database."""
    async with (
        scratch_topic(stack.kafka, "usage.records.deadlines") as topic,
        usage_instance(stack, log, topic, USAGE_WARNING_SCAN_SECONDS="1") as usage,
    ):
        conn = await asyncpg.connect(usage.database)
        try:
            yield usage, topic, conn
        finally:
            await conn.close()


def _in(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def test_a_key_expiring_in_six_days_is_warned_about_once_whatever_the_restarts(
    stack: Stack, account: Account, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with scanning_usage(stack, tmp_path / "usage.log") as (usage, _, conn):
        six_days = await create_key(api, name="expires in 6 days", expires_at=_in(6))
        [alert] = await _wait_alerts(conn, six_days["id"], "key_expiring")
        assert alert["severity"] == "warning" and alert["expected"] == 7
        assert alert["evidence"]["threshold_days"] == 7
        assert 5.9 < alert["observed"] <= 6
        assert six_days["id"] in alert["summary"]

        # Restarted (scans on start, finds the same warning): still one.
        usage.kill()
        usage.restart()
        await usage.wait_ready()
        # A key that expires within the day: its 1-day warning is a separate alert;
        # once it is there, a scan after the restart has seen the first key again
        # (every scan reads every key close to its expiry).
        tomorrow = await create_key(api, name="expires tomorrow", expires_at=_in(0.5))
        [last] = await _wait_alerts(conn, tomorrow["id"], "key_expiring")
        assert last["expected"] == 1 and last["evidence"]["threshold_days"] == 1
        assert len(await _alerts(conn, six_days["id"], "key_expiring")) == 1
        assert len(await _alerts(conn, tomorrow["id"], "key_expiring")) == 1

        # Each account chooses its first warning's lead time (default 7 days).
        async with account.client(usage.url) as on_usage:
            answer = await on_usage.get("/v1/settings/alerts")
            assert answer.json() == {"key_expiring_days": 7, "default": True}
            changed = await on_usage.put("/v1/settings/alerts", json={"key_expiring_days": 10})
            assert changed.status_code == 200, changed.text
            refused = await on_usage.put("/v1/settings/alerts", json={"key_expiring_days": 0})
            assert refused.status_code == 422
            answer = await on_usage.get("/v1/settings/alerts")
            assert answer.json() == {"key_expiring_days": 10, "default": False}
        nine_days = await create_key(api, name="expires in 9 days", expires_at=_in(9))
        [early] = await _wait_alerts(conn, nine_days["id"], "key_expiring")
        assert early["evidence"]["threshold_days"] == 10


async def _verify(client: httpx.AsyncClient, secret: str) -> dict[str, Any]:
    answer = await client.post("/v1/verify", json={"key": secret})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_a_rotation_ends_itself_on_every_verifier_once_the_old_secret_is_quiet(
    stack: Stack, account: Account, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    created = await create_key(api, name="rotating")
    key_id, old = created["id"], created["key"]
    async with (
        another_keys_instance(stack, tmp_path / "keys-b.log") as b_url,
        account.client(b_url) as on_b,
        Verifier(stack.url("keys"), account.admin_key, stack.kafka) as library,
        UsageReporter(stack.kafka) as reporter,
    ):
        assert (await library.verify(old)).valid  # cached by the library as the current one
        rotated = await api.post(
            f"/v1/keys/{key_id}/rotate",
            json={"grace_period_seconds": 3600, "end_grace_when_quiet_seconds": QUIET},
        )
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["key"]
        assert rotated.json()["end_grace_when_quiet_seconds"] == QUIET

        # Clients keep presenting the old secret for longer than the quiet time, first only
        # to the other keys instance, then only through the library (answered from its
        # memory: only the gateway's usage record marked previous says so): it keeps
        # working, each verifier's use counting on its own.
        async def on_other_instance() -> dict[str, Any]:
            return await _verify(on_b, old)

        async def through_the_library() -> dict[str, Any]:
            verdict = await library.verify(old)
            reporter.report(
                key_id=key_id,
                account_id=account.id,
                source_ip="203.0.113.9",
                endpoint="/v1/generate",
                status_code=200,
                latency_ms=3.0,
                secret=verdict.secret,
            )
            return {"valid": verdict.valid, "secret": verdict.secret}

        last_use = time.monotonic()
        for use in (on_other_instance, through_the_library):
            until = time.monotonic() + 1.6 * QUIET
            while time.monotonic() < until:
                answer = await use()
                # Read as the use's answer came: the time of the old secret's last use (the
                # verifier's, or the usage record's) is no later than this.
                last_use = time.monotonic()
                assert answer["valid"] and answer["secret"] == "previous", (use, answer)
                await asyncio.sleep(1.0)
        # Then every client has moved to the new secret.
        for client in (api, on_b):
            assert (await _verify(client, new))["secret"] == "current"
        assert (await library.verify(new)).valid
        asked = library.lookups  # the library holds both answers from here on

        # Presenting the old secret would be a use of it: watch the key instead.
        async def grace_ended() -> bool:
            view = (await api.get(f"/v1/keys/{key_id}")).json()
            return view["end_grace_when_quiet_seconds"] is None

        await wait_until(grace_ended, timeout=60, interval=0.1, what="the grace period's end")
        # Not before the quiet time, counted from the last use (the product's clock is the
        # wall clock, the test's the monotonic one: half a second for their difference).
        assert time.monotonic() - last_use >= QUIET - 0.5

        async def refused_everywhere() -> bool:
            codes = [(await _verify(c, old))["code"] for c in (api, on_b)]
            return codes == ["revoked", "revoked"] and (await library.verify(old)).code == (
                "revoked"
            )

        await wait_until(
            refused_everywhere, timeout=60, interval=0.05, what="the old secret refused"
        )
        assert library.lookups == asked, "the library refused it from the event, not by asking"
        for client in (api, on_b):
            assert (await _verify(client, new))["valid"]
        assert (await library.verify(new)).valid

    history = (await api.get(f"/v1/keys/{key_id}/events")).json()["items"]
    ended = next(e for e in history if e["event_type"] == "KeyGracePeriodEnded")
    assert ended["data"]["reason"] == "old_secret_quiet"
    assert ended["data"]["quiet_seconds"] == QUIET
    assert ended["data"]["last_used_at"] is not None
    assert ended["data"]["previous_prefix"] == created["prefix"]
    assert ended["actor"]["type"] == "system"
    assert [e["event_type"] for e in history].count("KeyGracePeriodEnded") == 1
    view = (await api.get(f"/v1/keys/{key_id}")).json()
    assert view["end_grace_when_quiet_seconds"] is None
    assert view["grace_period_ends_at"] == ended["data"]["ended_at"]

    async with account.client(stack.url("audit")) as audit:

        async def audited() -> list[Any]:
            answer = await audit_get(
                audit, "/v1/audit/events", key_id=key_id, action="key.grace_period_ended"
            )
            items: list[Any] = answer.json()["items"]
            return items

        [record] = await wait_until(audited, timeout=60, what="the audit record of the end")
        assert record["actor"]["type"] == "system"


async def test_an_old_secret_never_used_after_the_rotation_stops_after_the_quiet_time(
    api: httpx.AsyncClient,
) -> None:
    created = await create_key(api, name="rotated, old secret unused")
    rotated = await api.post(
        f"/v1/keys/{created['id']}/rotate",
        json={"grace_period_seconds": 3600, "end_grace_when_quiet_seconds": 2},
    )
    assert rotated.status_code == 200, rotated.text

    async def ended() -> dict[str, Any] | None:
        items = (await api.get(f"/v1/keys/{created['id']}/events")).json()["items"]
        return next((e for e in items if e["event_type"] == "KeyGracePeriodEnded"), None)

    event = await wait_until(ended, timeout=60, what="the grace period's end")
    assert event is not None
    assert event["data"]["last_used_at"] is None
    assert (await _verify(api, created["key"]))["code"] == "revoked"
    assert (await _verify(api, rotated.json()["key"]))["valid"]


async def test_quiet_seconds_need_a_grace_period(api: httpx.AsyncClient) -> None:
    created = await create_key(api, name="no grace")
    answer = await api.post(
        f"/v1/keys/{created['id']}/rotate",
        json={"grace_period_seconds": 0, "end_grace_when_quiet_seconds": 5},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "grace_period_required"
    answer = await api.post(
        f"/v1/keys/{created['id']}/rotate",
        json={"grace_period_seconds": 60, "end_grace_when_quiet_seconds": 0},
    )
    assert answer.status_code == 422, answer.text


async def test_grace_ending_is_warned_about_only_while_the_old_secret_is_in_use(
    stack: Stack,
    account: Account,
    api: httpx.AsyncClient,
    producer: KafkaProducer,
    tmp_path: Path,
) -> None:
    async with scanning_usage(stack, tmp_path / "usage.log") as (_, topic, conn):
        used, unused = [await create_key(api, name=n) for n in ("still used", "moved")]
        for key in (used, unused):
            answer = await api.post(
                f"/v1/keys/{key['id']}/rotate", json={"grace_period_seconds": 1800}
            )
            assert answer.status_code == 200, answer.text

        async def rotation_known() -> bool:
            ends = await conn.fetchval(
                "SELECT grace_period_ends_at FROM key_directory WHERE key_id = $1",
                uuid.UUID(unused["id"]),
            )
            return ends is not None

        # Known before the old secret's use is sent: the scan that warns about the
        # used key has seen the other one too.
        await wait_until(rotation_known, timeout=60, what="the rotation in the directory")
        old_use = UsageRecord(
            record_id=uuid.uuid4(),
            key_id=uuid.UUID(used["id"]),
            account_id=account.id,
            occurred_at=datetime.now(UTC),
            source_ip="203.0.113.7",
            endpoint="/v1/generate",
            status_code=200,
            tokens_in=1,
            tokens_out=1,
            latency_ms=1.0,
            secret="previous",
        )
        await publish(producer, [old_use], topic)
        [alert] = await _wait_alerts(conn, used["id"], "grace_period_ending")
        assert alert["severity"] == "warning"
        assert alert["evidence"]["previous_secret_last_used_at"]
        assert await _alerts(conn, unused["id"], "grace_period_ending") == []
        assert len(await _alerts(conn, used["id"], "grace_period_ending")) == 1
