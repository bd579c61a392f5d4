"""Retention removes whole checkpointed segments of a chain, says so in the chain itself,
and leaves a log that still verifies and keeps growing."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from servicekit.kafka import KafkaProducer
from tests.support.accounts import new_account
from tests.support.audit import (
    audit_cli,
    audit_get,
    cli_verdict,
    key_stream,
    publish,
    wait_for_checkpoint,
    wait_for_records,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.stack


async def test_retention_cuts_a_signed_segment_and_the_log_still_verifies(
    stack: Stack, producer: KafkaProducer, db: dict[str, asyncpg.Connection]
) -> None:
    account = await new_account(stack, "retention")
    await publish(producer, key_stream(account.id, keys=3, per_key=4).events)
    await wait_for_records(db["audit"], account.id, 13)  # the admin key, then 12 events
    await wait_for_checkpoint(db["audit"], account.id, 13)

    def retention(*extra: str) -> str:
        done = audit_cli(stack, "apply-retention", "--account", account.id, "--days", "0", *extra)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "would remove records 1..13" in await asyncio.to_thread(retention, "--dry-run")
    assert (
        await db["audit"].fetchval(
            "SELECT count(*) FROM audit_records WHERE account_id = $1", account.id
        )
        == 13
    )
    assert "removed records 1..13 (13 records)" in await asyncio.to_thread(retention)

    remaining = await db["audit"].fetch(
        "SELECT seq, action FROM audit_records WHERE account_id = $1 ORDER BY seq", account.id
    )
    assert [(r["seq"], r["action"]) for r in remaining] == [(14, "retention.applied")]
    async with account.client(stack.url("audit")) as audit:
        report = (await audit_get(audit, "/v1/audit/verify")).json()
        assert report["valid"] is True, report
        assert report["retention"]["removed_through_sequence"] == 13
        assert (report["first_sequence"], report["last_sequence"]) == (14, 14)
        (anchor_record,) = (await audit_get(audit, "/v1/audit/events")).json()["items"]
        assert anchor_record["actor"]["id"] == "audit-retention"
        assert anchor_record["details"]["removed_records"] == 13
        assert anchor_record["details"]["removed_through_seq"] == 13

        await publish(producer, key_stream(account.id, keys=1, per_key=2).events)
        await wait_for_records(db["audit"], account.id, 16)
        after = (await audit_get(audit, "/v1/audit/verify")).json()
        assert after["valid"] is True and after["last_sequence"] == 16, after
        # Again: a no-op, or a cut up to the newest checkpoint if one was signed meanwhile.
        await asyncio.to_thread(retention)
        again = (await audit_get(audit, "/v1/audit/verify")).json()
        assert again["valid"] is True and again["last_sequence"] >= 16, again
    status, cli_report = await cli_verdict(stack, account.id)
    assert status == 0 and cli_report["valid"]


async def test_retention_keeps_a_segment_that_does_not_verify(
    stack: Stack, producer: KafkaProducer, db: dict[str, asyncpg.Connection]
) -> None:
    account = await new_account(stack, "retention-evidence")
    await publish(producer, key_stream(account.id, keys=2, per_key=2).events)
    await wait_for_records(db["audit"], account.id, 5)
    await wait_for_checkpoint(db["audit"], account.id, 5)
    async with db["audit"].transaction():
        await db["audit"].execute("SET LOCAL session_replication_role = replica")
        await db["audit"].execute(
            "UPDATE audit_records SET key_name = 'renamed quietly'"
            " WHERE account_id = $1 AND seq = 2",
            account.id,
        )
    done = await asyncio.to_thread(
        audit_cli, stack, "apply-retention", "--account", account.id, "--days", "0"
    )
    assert done.returncode == 1
    assert "kept, it does not verify" in done.stdout
    assert (
        await db["audit"].fetchval(
            "SELECT count(*) FROM audit_records WHERE account_id = $1", account.id
        )
        == 5
    )
