"""Talking to the keys service the way other services do: commands on `keys.commands`,
answers from `keys.command-results`; and more keys processes than the stack runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, TypeVar

from contracts import (
    KEYS_COMMANDS,
    Actor,
    CommandEnvelope,
    CommandResult,
    ContractModel,
    DisableKey,
    DisableKeyData,
    EnableKey,
    EnableKeyData,
    KeyPatch,
    UpdateKey,
)
from servicekit.kafka import KafkaProducer
from tests.support.kafka import Record, TopicTail
from tests.support.processes import another_instance
from tests.support.stack import Stack

C = TypeVar("C", bound=CommandEnvelope)
BILLING = Actor(type="service", id="billing")
"""The internal service on whose behalf the tests send commands."""


def issue(
    kind: type[C], account_id: str, data: ContractModel, key_id: uuid.UUID | None = None
) -> C:
    """A new command from billing (a fresh command_id each time)."""
    return kind.model_validate(
        {
            "command_id": uuid.uuid4(),
            "account_id": account_id,
            "key_id": key_id,
            "actor": BILLING,
            "issued_at": datetime.now(UTC),
            "data": data,
        }
    )


def contending_command(account_id: str, key_id: uuid.UUID, i: int) -> CommandEnvelope:
    """The i-th of a run of commands that contend for one key: rename, disable, enable."""
    if i % 3 == 0:
        return issue(UpdateKey, account_id, KeyPatch(name=f"contender-{i}"), key_id)
    if i % 3 == 1:
        return issue(DisableKey, account_id, DisableKeyData(reason=f"#{i}"), key_id)
    return issue(EnableKey, account_id, EnableKeyData(), key_id)


def contending_commands(account_id: str, key_id: uuid.UUID, count: int) -> list[CommandEnvelope]:
    return [contending_command(account_id, key_id, i) for i in range(count)]


def wire(command: CommandEnvelope) -> tuple[bytes, bytes]:
    """(message key, value) as a sender puts a command on the topic: keyed by key_id."""
    key = str(command.key_id or command.command_id).encode()
    return key, command.model_dump_json().encode()


async def send(producer: KafkaProducer, command: CommandEnvelope) -> None:
    key, value = wire(command)
    await producer.send(KEYS_COMMANDS, value, key=key)


class CommandResults:
    """Every record of `keys.command-results` from the moment it was opened, by message key."""

    def __init__(self, tail: TopicTail) -> None:
        self._tail = tail
        self.records: dict[uuid.UUID, list[Record]] = {}

    async def _read_until(
        self, enough: Callable[[dict[uuid.UUID, int]], bool], timeout: float
    ) -> None:
        def complete(new: list[Record]) -> bool:
            counts = {cid: len(records) for cid, records in self.records.items()}
            for record in new:
                cid = _command_id(record)
                if cid is not None:
                    counts[cid] = counts.get(cid, 0) + 1
            return enough(counts)

        for record in await self._tail.collect(complete, timeout):
            cid = _command_id(record)
            if cid is not None:
                self.records.setdefault(cid, []).append(record)

    async def wait_for(
        self, command_ids: Collection[uuid.UUID], timeout: float = 60.0
    ) -> dict[uuid.UUID, CommandResult]:
        """The (first) result of each command; fails when one is missing after `timeout`."""
        await self._read_until(lambda counts: all(cid in counts for cid in command_ids), timeout)
        return {
            cid: CommandResult.model_validate_json(self.records[cid][0].value or b"")
            for cid in command_ids
        }

    async def one(self, command_id: uuid.UUID, timeout: float = 60.0) -> CommandResult:
        return (await self.wait_for([command_id], timeout))[command_id]

    async def answers(self, command_id: uuid.UUID, count: int, timeout: float = 60.0) -> list[Any]:
        """The first `count` results to one command (e.g. a redelivered one), as JSON."""
        await self._read_until(lambda counts: counts.get(command_id, 0) >= count, timeout)
        return [json.loads(r.value or b"") for r in self.records[command_id][:count]]


def _send_at_once(bootstrap: str, messages: Sequence[tuple[bytes, bytes]], start: Barrier) -> None:
    """Body of a sender process: connect, wait for the others, then send everything."""

    async def run() -> None:
        producer = KafkaProducer(bootstrap, client_id=f"billing-{uuid.uuid4().hex[:6]}")
        await producer.start()
        try:
            await asyncio.to_thread(start.wait, 30)
            sends = [producer.send(KEYS_COMMANDS, value, key=key) for key, value in messages]
            await asyncio.gather(*sends)
        finally:
            await producer.stop()

    asyncio.run(run())


async def send_from_processes(
    bootstrap: str, commands: Sequence[CommandEnvelope], processes: int
) -> None:
    """Send `commands` from `processes` separate OS processes, released at the same moment."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    shares = [[wire(c) for c in commands[i::processes]] for i in range(processes)]
    senders = [
        context.Process(target=_send_at_once, args=(bootstrap, share, start)) for share in shares
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        await asyncio.to_thread(sender.join, 90)
    assert [s.exitcode for s in senders] == [0] * processes, "a sender process failed"


@contextlib.asynccontextmanager
async def another_keys_instance(stack: Stack, log: Path, **settings: str) -> AsyncIterator[str]:
    """A second keys process on a free port, same broker and database; yields its URL."""
    async with another_instance(stack, "keys", log, **settings) as (url, _):
        yield url


def _command_id(record: Record) -> uuid.UUID | None:
    """The message key as a command id; other scenarios also put messages with other keys
    (e.g. poison for the dead letters) on the topic."""
    try:
        return uuid.UUID((record.key or b"").decode())
    except (ValueError, UnicodeDecodeError):
        return None
