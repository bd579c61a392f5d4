"""Nobody can edit the audit history unnoticed: the service's own role cannot change it, and
whatever the tables' owner does to it with SQL, verify names the first broken record.

Each tampering happens on the chain of an account of its own (a scratch chain), which stays
broken afterwards; no other scenario reads it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from servicekit.kafka import KafkaProducer
from tests.support.accounts import Account, new_account
from tests.support.audit import (
    audit_get,
    cli_verdict,
    key_stream,
    publish,
    wait_for_checkpoint,
    wait_for_records,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.stack
CHAIN_LENGTH = 7  # the admin key's creation, then 6 events of our own
Tamper = Callable[[asyncpg.Connection, str], Awaitable[None]]


async def _owner(conn: asyncpg.Connection) -> None:
    # As a superuser would: bypass the append-only triggers (the service's role cannot).
    await conn.execute("SET session_replication_role = replica")


async def edit_an_actor(conn: asyncpg.Connection, account: str) -> None:
    await conn.execute(
        "UPDATE audit_records SET actor_id = 'someone-else' WHERE account_id = $1 AND seq = 4",
        account,
    )


async def delete_a_middle_record(conn: asyncpg.Connection, account: str) -> None:
    await conn.execute("DELETE FROM audit_records WHERE account_id = $1 AND seq = 4", account)


async def swap_two_records(conn: asyncpg.Connection, account: str) -> None:
    for old, new in ((3, 1000), (4, 3), (1000, 4)):
        await conn.execute(
            "UPDATE audit_records SET seq = $3 WHERE account_id = $1 AND seq = $2",
            account,
            old,
            new,
        )


async def insert_a_record(conn: asyncpg.Connection, account: str) -> None:
    """Make room at 4 and put there a plausible record that links to record 3."""
    await conn.execute(
        "UPDATE audit_records SET seq = seq + 1000 WHERE account_id = $1 AND seq >= 4", account
    )
    await conn.execute(
        "UPDATE audit_records SET seq = seq - 999 WHERE account_id = $1 AND seq > 1000", account
    )
    await conn.execute(
        "INSERT INTO audit_records SELECT account_id, 4, gen_random_uuid(),"
        " 'event:' || gen_random_uuid(), occurred_at, recorded_at, actor_type, actor_id,"
        " actor_ip, actor_user_agent, 'key.revealed', key_id, key_name, outcome,"
        " correlation_id, causation_id, '{}', hash, sha256(hash)"
        " FROM audit_records WHERE account_id = $1 AND seq = 3",
        account,
    )


async def delete_the_newest_record(conn: asyncpg.Connection, account: str) -> None:
    """And rewind the head, as a careful intruder would: only the checkpoint remembers."""
    await conn.execute("DELETE FROM audit_records WHERE account_id = $1 AND seq = 7", account)
    await conn.execute(
        "UPDATE audit_chain_heads SET seq = 6, hash = (SELECT hash FROM audit_records"
        " WHERE account_id = $1 AND seq = 6) WHERE account_id = $1",
        account,
    )


@dataclasses.dataclass(frozen=True)
class Case:
    tamper: Tamper
    first_broken: int
    code: str


CASES = {
    "an actor edited": Case(edit_an_actor, 4, "altered"),
    "a middle record deleted": Case(delete_a_middle_record, 4, "missing"),
    "two records swapped": Case(swap_two_records, 3, "altered"),
    "a record inserted": Case(insert_a_record, 4, "altered"),
    "the newest record deleted": Case(delete_the_newest_record, 7, "truncated"),
}


@pytest.fixture(scope="module")
async def scratch_chains(stack: Stack, producer: KafkaProducer) -> dict[str, Account]:
    """One account per case, its chain complete and checkpointed."""
    accounts = {name: await new_account(stack, "tamper") for name in CASES}
    for account in accounts.values():
        await publish(producer, key_stream(account.id, keys=2, per_key=3).events)
    conn = await asyncpg.connect(stack.database("audit"))
    try:
        for account in accounts.values():
            await wait_for_records(conn, account.id, CHAIN_LENGTH)
            await wait_for_checkpoint(conn, account.id, CHAIN_LENGTH)
    finally:
        await conn.close()
    return accounts


async def _api_verdict(stack: Stack, account: Account) -> dict[str, Any]:
    async with account.client(stack.url("audit")) as audit:
        answer = await audit_get(audit, "/v1/audit/verify")
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    return report


@pytest.mark.parametrize("name", list(CASES))
async def test_each_tampering_is_reported_by_verify_naming_the_first_broken_record(
    stack: Stack, scratch_chains: dict[str, Account], name: str
) -> None:
    account, case = scratch_chains[name], CASES[name]
    before = await _api_verdict(stack, account)
    assert before["valid"] is True, before
    assert before["last_sequence"] == CHAIN_LENGTH

    conn = await asyncpg.connect(stack.database("audit"))
    try:
        async with conn.transaction():
            await _owner(conn)
            await case.tamper(conn, account.id)
    finally:
        await conn.close()

    after = await _api_verdict(stack, account)
    assert after["valid"] is False
    broken = after["first_broken"]
    assert (broken["sequence"], broken["code"]) == (case.first_broken, case.code), broken
    status, report = await cli_verdict(stack, account.id)
    assert status == 1
    assert report["first_broken"] == broken


async def test_the_services_database_role_cannot_change_or_remove_history(
    db: dict[str, asyncpg.Connection],
) -> None:
    conn = db["audit"]
    for statement in (
        "UPDATE audit_records SET actor_id = 'x' WHERE false",
        "DELETE FROM audit_records WHERE false",
        "UPDATE audit_checkpoints SET seq = 0 WHERE false",
        "DELETE FROM audit_checkpoints WHERE false",
        "DELETE FROM audit_retention_anchors WHERE false",
        "INSERT INTO audit_retention_anchors SELECT * FROM audit_retention_anchors WHERE false",
        "TRUNCATE audit_records",
    ):
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE audit_writer")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    async with conn.transaction():
        await conn.execute("SET LOCAL ROLE audit_writer")
        assert await conn.fetchval("SELECT count(*) >= 0 FROM audit_records")


async def test_even_the_owner_is_stopped_by_the_append_only_guard(
    producer: KafkaProducer, db: dict[str, asyncpg.Connection]
) -> None:
    account = f"guard-{uuid.uuid4().hex[:12]}"
    await publish(producer, key_stream(account, keys=1, per_key=1).events)
    await wait_for_records(db["audit"], account, 1)
    for statement in (
        "UPDATE audit_records SET actor_id = 'x' WHERE account_id = $1",
        "DELETE FROM audit_records WHERE account_id = $1",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await db["audit"].execute(statement, account)


async def test_a_forged_checkpoint_is_reported(
    stack: Stack, db: dict[str, asyncpg.Connection]
) -> None:
    account = await new_account(stack, "forged")
    await wait_for_records(db["audit"], account.id, 1)
    await wait_for_checkpoint(db["audit"], account.id, 1)
    async with db["audit"].transaction():
        await _owner(db["audit"])
        await db["audit"].execute(
            "INSERT INTO audit_checkpoints SELECT account_id, seq + 5, hash, signed_at,"
            " sha256(signature) FROM audit_checkpoints WHERE account_id = $1 AND seq = 1",
            account.id,
        )
    report = await _api_verdict(stack, account)
    assert report["valid"] is False
    assert report["first_broken"]["code"] == "forged_checkpoint"
