"""Point 6: 100 conflicting commands on one key from 4 OS processes at once (two over
HTTP, two on `keys.commands`): no update is lost, the stream has no gap, every accepted
command has its events, and the read model equals a replay of the events."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from collections import Counter
from collections.abc import Sequence
from multiprocessing.synchronize import Barrier
from typing import Any

import asyncpg
import httpx

from services.keys.adapters import event_store
from services.keys.domain.key import replay
from tests.faults.support import MARKS, report
from tests.support.accounts import Account
from tests.support.kafka import TopicTail
from tests.support.keys_processes import CommandResults, contending_commands, send_from_processes
from tests.support.stack import Stack

pytestmark = MARKS
PROCESSES, PER_PROCESS = 4, 25
HTTP_PROCESSES = 2


def _http_sender(
    url: str, headers: dict[str, str], key_id: str, n: int, start: Barrier, out: Any
) -> None:
    """Body of an HTTP process: rename, disable, enable, ... as fast as answers come."""
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        start.wait(30)
        for i in range(PER_PROCESS):
            path = f"/v1/keys/{key_id}"
            if i % 3 == 0:
                answer = client.patch(path, json={"name": f"http-{n}-{i}"})
            elif i % 3 == 1:
                answer = client.post(f"{path}/disable", json={"reason": f"http {n}"})
            else:
                answer = client.post(f"{path}/enable")
            statuses[answer.status_code] += 1
    out.put(dict(statuses))


async def _over_http(account: Account, key_id: str) -> Counter[int]:
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(HTTP_PROCESSES), context.Queue()
    senders = [
        context.Process(
            target=_http_sender, args=(account.keys_url, account.headers, key_id, n, start, out)
        )
        for n in range(HTTP_PROCESSES)
    ]
    for sender in senders:
        sender.start()
    statuses: Counter[int] = Counter()
    for _ in senders:
        statuses.update(await asyncio.to_thread(out.get, True, 120))
    for sender in senders:
        await asyncio.to_thread(sender.join, 30)
    assert [s.exitcode for s in senders] == [0] * HTTP_PROCESSES
    return statuses


def _names_chain(events: Sequence[Any]) -> int:
    """Each rename's `before` is the name the previous events left: no update was made
    on a stale copy (a lost update would show as a `before` nobody wrote)."""
    name, renames = None, 0
    for event in events:
        if event.event_type == "KeyCreated":
            name = event.data["name"]
        elif event.event_type == "KeyUpdated" and "name" in event.data["after"]:
            assert event.data["before"]["name"] == name, event
            name = event.data["after"]["name"]
            renames += 1
    return renames


async def test_conflicting_commands_from_four_processes_lose_no_update(
    stack: Stack, account: Account, api: httpx.AsyncClient, db: dict[str, asyncpg.Connection]
) -> None:
    created = await api.post("/v1/keys", json={"name": "contended"})
    key_id = created.json()["id"]
    commands = contending_commands(
        account.id, uuid.UUID(key_id), (PROCESSES - HTTP_PROCESSES) * PER_PROCESS
    )
    async with TopicTail(stack.kafka, "keys.command-results") as tail:
        results = CommandResults(tail)
        http_statuses, _ = await asyncio.gather(
            _over_http(account, key_id),
            send_from_processes(stack.kafka, commands, PROCESSES - HTTP_PROCESSES),
        )
        answers = await results.wait_for([c.command_id for c in commands], timeout=120)

    events = await event_store.stream(db["keys"], uuid.UUID(key_id))
    versions = [e.stream_version for e in events]
    assert versions == list(range(1, len(events) + 1)), "a gapless stream"
    stored = {e.event_id for e in events}
    accepted = [r for r in answers.values() if r.status == "accepted"]
    assert all(set(r.event_ids) <= stored for r in accepted), "an accepted command's events"
    by_command = Counter(e.causation_id for e in events if e.causation_id)
    kafka_ids = {str(c.command_id) for c in commands}
    assert {c for c in by_command if c in kafka_ids} == {
        str(r.command_id) for r in accepted if r.event_ids
    }
    renames = _names_chain(events)

    state = replay(events)
    assert state is not None
    row = await db["keys"].fetchrow("SELECT * FROM key_state WHERE key_id = $1", state.key_id)
    projected = {k: row[k] for k in ("name", "status", "version", "disabled_reason", "scopes")}
    replayed = {
        "name": state.name,
        "status": state.status,
        "version": state.version,
        "disabled_reason": state.disabled_reason,
        "scopes": list(state.scopes),
    }
    assert projected == replayed
    shown = (await api.get(f"/v1/keys/{key_id}")).json()
    assert (shown["name"], shown["status"], shown["version"]) == (
        state.name,
        state.status,
        state.version,
    )
    http_ok = sum(n for s, n in http_statuses.items() if s == 200)
    http_changes = sum(1 for e in events if e.causation_id is None) - 1  # but KeyCreated
    rejected = Counter(r.error.code for r in answers.values() if r.error is not None)
    report(
        "concurrency",
        6,
        "100 conflicting commands on one key from 4 processes",
        f"{len(commands)} commands on keys.commands ({len(accepted)} accepted, rejected"
        f" {dict(rejected)}), {sum(http_statuses.values())} over HTTP (answers"
        f" {dict(http_statuses)}); {len(events)} events, versions 1..{len(events)} without a gap,"
        f" {renames} renames each based on the latest name; lost updates 0;"
        " projection == replay",
        events=len(events),
        accepted=len(accepted),
        http=dict(http_statuses),
        rejected=dict(rejected),
    )
    assert len(accepted) > 0 and http_ok > 0 and renames > 0
    assert http_changes <= http_ok
