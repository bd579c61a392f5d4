"""An append costs its reads and one statement, without BEGIN and COMMIT (issue 14).

The unit of work runs on the real keys database through a connection that notes each
statement it is asked to send (its first word; BEGIN when a transaction is opened): a
change to a key is its read and one write, a batch of commands is two reads and one write,
and what they wrote is all there, committed (a single statement is atomic on its own).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson
from pydantic import SecretStr

from contracts import Actor, KeyPatch, parse_command
from devstack import services as devstack_services
from services.keys.app import commands, use_cases
from services.keys.app.unit_of_work import KeysTransaction, KeysUnitOfWork
from services.keys.bootstrap import secret_tools
from services.keys.domain.recorded import Meta
from services.keys.settings import KeysSettings
from tests.support.accounts import Account


class _Noted:
    """A real connection that notes the first word of every statement sent through it."""

    def __init__(self, conn: asyncpg.Connection, said: list[str]) -> None:
        self._conn = conn
        self._said = said

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def _note(self, sql: str) -> None:
        self._said.append(sql.split(None, 1)[0].upper())

    async def execute(self, sql: str, *args: Any) -> Any:
        self._note(sql)
        return await self._conn.execute(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> Any:
        self._note(sql)
        return await self._conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self._note(sql)
        return await self._conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self._note(sql)
        return await self._conn.fetchval(sql, *args)

    def transaction(self) -> Any:
        self._said.append("BEGIN")
        return self._conn.transaction()


class _Pool:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.said: list[str] = []

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[_Noted]:
        yield _Noted(self.conn, self.said)


def _tools() -> use_cases.SecretTools:
    env = devstack_services.service_env("", "postgresql://x@127.0.0.1/x", "keys")
    return secret_tools(
        KeysSettings(
            keys_hash_pepper=SecretStr(env["KEYS_HASH_PEPPER"]),
            keys_master_key=SecretStr(env["KEYS_MASTER_KEY"]),
        )
    )


def _meta(correlation: str, causation: str | None = None) -> Meta:
    actor = Actor(type="system", id="append-statements")
    return Meta(actor, datetime.now(UTC), correlation, causation)


async def _new_key(api: httpx.AsyncClient, name: str) -> uuid.UUID:
    made = await api.post("/v1/keys", json={"name": name})
    assert made.status_code == 201, made.text
    return uuid.UUID(made.json()["id"])


async def test_a_change_to_a_key_is_its_read_and_one_statement(
    api: httpx.AsyncClient, account: Account, db: dict[str, asyncpg.Connection]
) -> None:
    key_id = await _new_key(api, "one statement")
    pool = _Pool(db["keys"])
    uow = KeysUnitOfWork(lambda: pool)

    async def rename(tx: KeysTransaction) -> use_cases.Outcome:
        patch = KeyPatch(name="renamed in one statement")
        return await use_cases.update(tx, account.id, key_id, patch, _meta("rename"))

    outcome = await use_cases.in_transaction(uow, rename)

    assert pool.said == ["SELECT", "WITH"], "the key's read, then one write; no BEGIN"
    assert not db["keys"].is_in_transaction()
    (event,) = outcome.events
    stored = await db["keys"].fetchrow(
        "SELECT e.event_type, e.stream_version, k.name, k.version FROM events e"
        " JOIN key_state k USING (key_id) WHERE e.event_id = $1",
        event.event_id,
    )
    assert dict(stored) == {
        "event_type": "KeyUpdated",
        "stream_version": outcome.key.version,
        "name": "renamed in one statement",
        "version": outcome.key.version,
    }


async def test_a_batch_of_commands_is_two_reads_and_one_write(
    api: httpx.AsyncClient, account: Account, db: dict[str, asyncpg.Connection]
) -> None:
    first, second = await _new_key(api, "batch one"), await _new_key(api, "batch two")
    pool = _Pool(db["keys"])
    uow = KeysUnitOfWork(lambda: pool)
    batch = []
    for command_type, key_id, data in [
        ("UpdateKey", first, {"name": "batched"}),
        ("DisableKey", first, {"reason": "batched"}),
        ("DisableKey", second, {"reason": "batched"}),
        ("EnableKey", first, {}),
    ]:
        command_id = str(uuid.uuid4())
        command = parse_command(
            orjson.dumps(
                {
                    "command_id": command_id,
                    "command_type": command_type,
                    "account_id": account.id,
                    "key_id": key_id,
                    "actor": {"type": "service", "id": "append-statements"},
                    "issued_at": datetime.now(UTC),
                    "data": data,
                }
            )
        )
        batch.append((command, _meta(command_id, command_id)))

    results = await commands.execute_batch(uow, _tools(), batch)

    assert [r.status for r in results] == ["accepted"] * 4
    assert pool.said == ["SELECT", "SELECT", "WITH"], "stored results, states; one write"
    ids = [command.command_id for command, _ in batch]
    stored = await db["keys"].fetchval(
        "SELECT count(*) FROM processed_commands WHERE command_id = ANY($1::uuid[])", ids
    )
    assert stored == 4
    events = await db["keys"].fetch(
        "SELECT key_id, stream_version, event_type FROM events"
        " WHERE causation_id = ANY($1::text[]) ORDER BY id",
        [str(i) for i in ids],
    )
    assert [(e["key_id"], e["event_type"]) for e in events] == [
        (first, "KeyUpdated"),
        (first, "KeyDisabled"),
        (second, "KeyDisabled"),
        (first, "KeyEnabled"),
    ]
    firsts = [e["stream_version"] for e in events if e["key_id"] == first]
    assert firsts == sorted(firsts) and len(set(firsts)) == 3, "in stream order, in id order"
    states = await db["keys"].fetch(
        "SELECT key_id, status, version FROM key_state WHERE key_id = ANY($1::uuid[])",
        [first, second],
    )
    assert {s["key_id"]: (s["status"], s["version"]) for s in states} == {
        first: ("active", firsts[-1]),
        second: ("disabled", events[2]["stream_version"]),
    }

    pool.said.clear()
    again = await commands.execute_batch(uow, _tools(), batch)
    assert again == results, "a redelivered batch gets the stored results"
    assert pool.said == ["SELECT"], "read once, and nothing written"
