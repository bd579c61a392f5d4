"""An append costs its reads and one statement, without BEGIN and COMMIT, and appends
made while another is in flight share one statement: one commit (issue 14); so do the
loads of keys made while another is in flight (one query).

The unit of work runs on the real keys database through connections that note each
statement they are asked to send (its first word; BEGIN when a transaction is opened): a
change to a key is its read and one write, a batch of commands is one read and one write,
and what they wrote is all there, committed (a single statement is atomic on its own).
Concurrent changes hold the first write until the others wait for it (the state the test
asserts on, never a time): they are then written as one group, each with its own
optimistic concurrency (a stale one fails alone, the others commit) and its own outcome.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson
from pydantic import SecretStr

from contracts import Actor, Command, KeyPatch, parse_command
from devstack import services as devstack_services
from services.keys.app import commands, use_cases
from services.keys.app.unit_of_work import KeysTransaction, KeysUnitOfWork
from services.keys.bootstrap import secret_tools
from services.keys.domain.errors import VersionConflict
from services.keys.domain.recorded import Meta
from services.keys.settings import KeysSettings
from tests.support.accounts import Account
from tests.support.stack import Stack
from tests.support.wait import wait_until


class _Noted:
    """A real connection that notes the first word of every statement sent through it
    (and, given `before`, awaits it with that word before sending)."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        said: list[str],
        before: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._conn = conn
        self._said = said
        self._before = before

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def _note(self, sql: str) -> None:
        word = sql.split(None, 1)[0].upper()
        self._said.append(word)
        if self._before is not None:
            await self._before(word)

    async def execute(self, sql: str, *args: Any) -> Any:
        await self._note(sql)
        return await self._conn.execute(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> Any:
        await self._note(sql)
        return await self._conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        await self._note(sql)
        return await self._conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        await self._note(sql)
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


class _Pools:
    """A real pool of connections to the keys database, each noted, whose first write
    (and, with `hold_reads`, first read) waits until `others` wait for it (so they come
    while it is in flight)."""

    def __init__(self, pool: asyncpg.Pool, others: int, hold_reads: bool) -> None:
        self.pool = pool
        self.said: list[str] = []
        self.uow = KeysUnitOfWork(lambda: self)
        self._others = others
        self._held = {"WITH": False, "SELECT": not hold_reads}

    async def _hold_first(self, word: str) -> None:
        if self._held.get(word, True):
            return
        self._held[word] = True
        group = self.uow.group if word == "WITH" else self.uow.reads
        await wait_until(
            lambda: _true(group.waiting == self._others),
            interval=0.01,
            what=f"{self._others} waiting for the first {word}",
        )

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[_Noted]:
        async with self.pool.acquire() as conn:
            yield _Noted(conn, self.said, self._hold_first)


async def _true(value: bool) -> bool:
    return value


async def _while_one_is_in_flight(
    pools: _Pools, first: Awaitable[Any], others: list[Awaitable[Any]]
) -> list[Any]:
    """Start `first`; once its write is on the way (and held), the `others`: the outcomes
    of all, `first`'s first, errors returned."""
    opener = asyncio.ensure_future(first)
    await wait_until(lambda: _true("WITH" in pools.said), interval=0.01, what="the first write")
    rest = await asyncio.gather(*others, return_exceptions=True)
    return [*(await asyncio.gather(opener, return_exceptions=True)), *rest]


@asynccontextmanager
async def _pools(stack: Stack, others: int, hold_reads: bool = False) -> AsyncIterator[_Pools]:
    pool = await asyncpg.create_pool(stack.database("keys"), min_size=1, max_size=others + 1)
    try:
        yield _Pools(pool, others, hold_reads)
    finally:
        await pool.close()


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


def _command(
    account: Account, command_type: str, key_id: uuid.UUID, data: dict[str, Any]
) -> tuple[Command, Meta]:
    """A command as the keys reader decodes it from `keys.commands`, with its meta."""
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
    return command, _meta(command_id, command_id)


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


async def test_a_batch_of_commands_is_one_read_and_one_write(
    api: httpx.AsyncClient, account: Account, db: dict[str, asyncpg.Connection]
) -> None:
    first, second = await _new_key(api, "batch one"), await _new_key(api, "batch two")
    pool = _Pool(db["keys"])
    uow = KeysUnitOfWork(lambda: pool)
    batch = [
        _command(account, command_type, key_id, data)
        for command_type, key_id, data in [
            ("UpdateKey", first, {"name": "batched"}),
            ("DisableKey", first, {"reason": "batched"}),
            ("DisableKey", second, {"reason": "batched"}),
            ("EnableKey", first, {}),
        ]
    ]

    results = await commands.execute_batch(uow, _tools(), batch)

    assert [r.status for r in results] == ["accepted"] * 4
    assert pool.said == ["SELECT", "WITH"], "stored results and states in one read; one write"
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


async def test_a_lone_command_is_one_read_and_one_write(
    api: httpx.AsyncClient, account: Account, db: dict[str, asyncpg.Connection]
) -> None:
    # At a low rate most batches hold one command: it takes the batch's two round trips,
    # not a read of its stored result and then one of its key's state before its write.
    key_id = await _new_key(api, "alone")
    pool = _Pool(db["keys"])
    batch = [_command(account, "DisableKey", key_id, {"reason": "alone"})]
    uow = KeysUnitOfWork(lambda: pool)

    [result] = await commands.execute_batch(uow, _tools(), batch)

    assert result.status == "accepted"
    assert pool.said == ["SELECT", "WITH"], "its stored result and state in one read; one write"
    status = await db["keys"].fetchval("SELECT status FROM key_state WHERE key_id = $1", key_id)
    assert status == "disabled"
    pool.said.clear()
    assert await commands.execute_batch(uow, _tools(), batch) == [result], "stored: answered"
    assert pool.said == ["SELECT"]


def _rename(
    account: Account, key_id: uuid.UUID, name: str, meta: Meta | None = None
) -> Callable[[KeysTransaction], Awaitable[use_cases.Outcome]]:
    async def work(tx: KeysTransaction) -> use_cases.Outcome:
        patch = KeyPatch(name=name)
        return await use_cases.update(tx, account.id, key_id, patch, meta or _meta(name))

    return work


async def _names(db: asyncpg.Connection, key_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await db.fetch(
        "SELECT key_id, name FROM key_state WHERE key_id = ANY($1::uuid[])", key_ids
    )
    return {r["key_id"]: r["name"] for r in rows}


async def test_changes_that_come_while_one_is_in_flight_share_one_read_and_one_write(
    api: httpx.AsyncClient, account: Account, db: dict[str, asyncpg.Connection], stack: Stack
) -> None:
    key_ids = [await _new_key(api, f"group {n}") for n in range(6)]
    async with _pools(stack, others=len(key_ids) - 1, hold_reads=True) as pools:
        outcomes = await asyncio.gather(
            *(
                use_cases.in_transaction(
                    pools.uow, _rename(account, k, f"grouped {n}"), retry_conflicts=False
                )
                for n, k in enumerate(key_ids)
            )
        )

    assert pools.said.count("SELECT") == 2, "the first read, then the five that waited: one"
    assert pools.said.count("WITH") == 2, "the first write, then the five that waited: one"
    assert "BEGIN" not in pools.said
    assert (pools.uow.reads.asked, pools.uow.reads.statements) == (6, 2)
    assert (pools.uow.group.appends, pools.uow.group.statements) == (6, 2)
    assert await _names(db["keys"], key_ids) == {k: f"grouped {n}" for n, k in enumerate(key_ids)}
    for outcome in outcomes:
        (event,) = outcome.events
        stored = await db["keys"].fetchval(
            "SELECT stream_version FROM events WHERE event_id = $1", event.event_id
        )
        assert stored == outcome.key.version == 2, "each its own result, each committed"


async def test_changes_to_the_same_version_of_a_key_one_wins_the_others_conflict(
    api: httpx.AsyncClient, account: Account, db: dict[str, asyncpg.Connection], stack: Stack
) -> None:
    key_id = await _new_key(api, "contended")
    async with _pools(stack, others=3) as pools:
        outcomes = await asyncio.gather(
            *(
                use_cases.in_transaction(
                    pools.uow, _rename(account, key_id, f"contender {n}"), retry_conflicts=False
                )
                for n in range(4)
            ),
            return_exceptions=True,
        )

    won = [o for o in outcomes if isinstance(o, use_cases.Outcome)]
    lost = [o for o in outcomes if not isinstance(o, use_cases.Outcome)]
    assert len(won) == 1 and len(lost) == 3, outcomes
    assert all(isinstance(e, VersionConflict) for e in lost), lost
    assert won[0].key.version == 2
    events = await db["keys"].fetch(
        "SELECT stream_version, data FROM events WHERE key_id = $1 ORDER BY stream_version",
        key_id,
    )
    assert [e["stream_version"] for e in events] == [1, 2], "the winner's event alone"
    assert (await _names(db["keys"], [key_id]))[key_id] == won[0].key.name


async def test_a_stale_change_in_a_group_fails_alone_and_the_others_commit(
    api: httpx.AsyncClient, account: Account, db: dict[str, asyncpg.Connection], stack: Stack
) -> None:
    first, stale, *fresh = [await _new_key(api, f"attributed {n}") for n in range(4)]

    async def stale_rename(tx: KeysTransaction) -> use_cases.Outcome:
        await tx.preload([stale])  # read at version 1 ...
        changed = await api.patch(f"/v1/keys/{stale}", json={"name": "changed meanwhile"})
        assert changed.status_code == 200, changed.text  # ... which is version 2 now
        return await _rename(account, stale, "stale rename")(tx)

    async with _pools(stack, others=3) as pools:
        outcomes = await _while_one_is_in_flight(
            pools,
            use_cases.in_transaction(pools.uow, _rename(account, first, "first")),
            [
                use_cases.in_transaction(pools.uow, stale_rename, retry_conflicts=False),
                *(
                    use_cases.in_transaction(pools.uow, _rename(account, k, f"fresh {n}"))
                    for n, k in enumerate(fresh)
                ),
            ],
        )

    assert isinstance(outcomes[1], VersionConflict), outcomes[1]
    assert all(isinstance(o, use_cases.Outcome) for o in outcomes[:1] + outcomes[2:]), outcomes
    assert pools.said.count("WITH") == 3, "the first; the group of three, refused; its two"
    names = await _names(db["keys"], [first, stale, *fresh])
    assert names == {
        first: "first",
        stale: "changed meanwhile",
        fresh[0]: "fresh 0",
        fresh[1]: "fresh 1",
    }


async def test_a_bad_change_in_a_group_does_not_lose_the_others(
    api: httpx.AsyncClient, account: Account, db: dict[str, asyncpg.Connection], stack: Stack
) -> None:
    first, bad, *good = [await _new_key(api, f"bad apple {n}") for n in range(4)]
    unstorable = _meta("a NUL \x00 is not text to PostgreSQL")
    async with _pools(stack, others=3) as pools:
        outcomes = await _while_one_is_in_flight(
            pools,
            use_cases.in_transaction(pools.uow, _rename(account, first, "first")),
            [
                use_cases.in_transaction(pools.uow, _rename(account, bad, "bad", unstorable)),
                *(
                    use_cases.in_transaction(pools.uow, _rename(account, k, f"good {n}"))
                    for n, k in enumerate(good)
                ),
            ],
        )

    assert isinstance(outcomes[1], asyncpg.PostgresError), outcomes[1]
    assert all(isinstance(o, use_cases.Outcome) for o in outcomes[:1] + outcomes[2:]), outcomes
    # The first; the group of three, refused as a whole; then each of them alone.
    assert pools.said.count("WITH") == 5
    names = await _names(db["keys"], [first, bad, *good])
    assert names == {first: "first", bad: "bad apple 1", good[0]: "good 0", good[1]: "good 1"}
