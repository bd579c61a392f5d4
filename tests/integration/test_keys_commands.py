"""Internal services manage keys by commands on `keys.commands`: each answered once on
`keys.command-results`, each change an event on `keys.events`, never a secret on Kafka."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from contracts import (
    KEYS_COMMAND_RESULTS,
    KEYS_EVENTS,
    Actor,
    CommandEnvelope,
    CreateKey,
    DisableKey,
    DisableKeyData,
    EnableKey,
    EnableKeyData,
    KeyAttributes,
    KeyPatch,
    KeyRevealedData,
    RevokeKey,
    RevokeKeyData,
    RotateKey,
    RotateKeyData,
    UpdateKey,
    parse_event,
)
from servicekit.kafka import KafkaProducer
from services.keys.adapters import event_store
from services.keys.app.use_cases import MAX_ATTEMPTS
from services.keys.domain.key import replay
from services.keys.domain.recorded import Change, Meta
from services.keys.domain.secret import SECRET_PATTERN
from tests.support.accounts import Account
from tests.support.kafka import TopicTail, header
from tests.support.keys_processes import (
    BILLING,
    CommandResults,
    contending_commands,
    issue,
    send,
    send_from_processes,
)
from tests.support.stack import Stack
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack


@pytest.fixture
async def results(stack: Stack) -> AsyncIterator[CommandResults]:
    async with TopicTail(stack.kafka, KEYS_COMMAND_RESULTS) as tail:
        yield CommandResults(tail)


async def _reveal(api: httpx.AsyncClient, key_id: uuid.UUID) -> str:
    revealed = await api.post(f"/v1/keys/{key_id}/reveal")
    assert revealed.status_code == 200, revealed.text
    secret: str = revealed.json()["key"]
    return secret


async def _verdict(api: httpx.AsyncClient, secret: str) -> str:
    code: str = (await api.post("/v1/verify", json={"key": secret})).json()["code"]
    return code


def _holds_no_secret(raw: bytes, secrets: list[str]) -> None:
    text = raw.decode()
    assert "secret_hash" not in text
    assert SECRET_PATTERN.search(text) is None, text
    assert not [s for s in secrets if s in text]


async def test_the_whole_lifecycle_over_commands_is_told_on_keys_events(
    stack: Stack,
    producer: KafkaProducer,
    results: CommandResults,
    account: Account,
    api: httpx.AsyncClient,
) -> None:
    async with TopicTail(stack.kafka, KEYS_EVENTS) as events:
        create = issue(CreateKey, account.id, KeyAttributes(name="billing-export", scopes=[]))
        await send(producer, create)
        created = await results.one(create.command_id)
        assert created.status == "accepted" and created.key_id is not None
        key_id = created.key_id
        assert created.prefix is not None and len(created.event_ids) == 1
        first_secret = await _reveal(api, key_id)  # the owner sees it; Kafka never does
        assert first_secret.startswith(created.prefix)

        steps: list[CommandEnvelope] = [
            issue(UpdateKey, account.id, KeyPatch(name="billing-export-v2"), key_id),
            issue(DisableKey, account.id, DisableKeyData(reason="invoice overdue"), key_id),
            issue(EnableKey, account.id, EnableKeyData(reason="invoice paid"), key_id),
            issue(RotateKey, account.id, RotateKeyData(grace_period_seconds=0), key_id),
        ]
        commands: list[CommandEnvelope] = [create]
        for step in steps:
            await send(producer, step)
            result = await results.one(step.command_id)
            assert result.status == "accepted", result
            assert result.key_id == key_id and len(result.event_ids) == 1
            commands.append(step)
        rotated_secret = await _reveal(api, key_id)
        assert await _verdict(api, first_secret) == "revoked"  # no grace period: out at once
        assert await _verdict(api, rotated_secret) == "valid"
        revoke = issue(RevokeKey, account.id, RevokeKeyData(reason="contract ended"), key_id)
        await send(producer, revoke)
        assert (await results.one(revoke.command_id)).status == "accepted"
        commands.append(revoke)
        assert await _verdict(api, rotated_secret) == "revoked"

        expected = [
            "KeyCreated",
            "KeyRevealed",
            "KeyUpdated",
            "KeyDisabled",
            "KeyEnabled",
            "KeyRotated",
            "KeyRevealed",
            "KeyRevoked",
        ]
        records = await events.collect(
            lambda rs: len([r for r in rs if r.key == str(key_id).encode()]) >= len(expected)
        )
        records += await events.settle(quiet=1.0)  # anything more for this key would be a bug

    ours = [r for r in records if r.key == str(key_id).encode()]
    parsed = [parse_event(r.value or b"") for r in ours]
    assert [e.event_type for e in parsed] == expected
    assert [e.stream_version for e in parsed] == list(range(1, len(expected) + 1))
    positions = [e.position for e in parsed]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    for record, event in zip(ours, parsed, strict=True):
        assert header(record, "event_type") == event.event_type
        assert header(record, "event_id") == str(event.event_id)
        assert header(record, "schema_version") == str(event.schema_version)
        assert event.key_id == key_id and event.account_id == account.id
        _holds_no_secret(record.value or b"", [first_secret, rotated_secret])
    by_command = [e for e in parsed if e.event_type != "KeyRevealed"]
    assert [e.causation_id for e in by_command] == [str(c.command_id) for c in commands]
    assert all(e.actor == BILLING for e in by_command)
    assert parsed[1].actor.type == "user"  # the reveal was the owner's, over HTTP

    for command in commands:
        (result_record,) = results.records[command.command_id]
        result = json.loads(result_record.value or b"")
        assert result["command_id"] == str(command.command_id)
        assert result["event_ids"] == [
            str(e.event_id) for e in by_command if e.causation_id == str(command.command_id)
        ]
        _holds_no_secret(result_record.value or b"", [first_secret, rotated_secret])
        assert not {"key", "secret", "plaintext"} & set(result)  # the owner reveals it instead


async def test_the_owner_views_the_secret_of_a_key_created_by_command(
    producer: KafkaProducer, results: CommandResults, account: Account, api: httpx.AsyncClient
) -> None:
    create = issue(CreateKey, account.id, KeyAttributes(name="made-by-billing"))
    await send(producer, create)
    created = await results.one(create.command_id)
    assert created.status == "accepted" and created.key_id is not None

    secret = await _reveal(api, created.key_id)

    assert created.prefix is not None and secret.startswith(created.prefix)
    verdict = (await api.post("/v1/verify", json={"key": secret})).json()
    assert verdict["valid"] is True and verdict["key_id"] == str(created.key_id)
    history = (await api.get(f"/v1/keys/{created.key_id}/events")).json()["items"]
    assert [e["event_type"] for e in history] == ["KeyRevealed", "KeyCreated"]


async def test_a_repeated_command_is_answered_alike_and_applied_once(
    producer: KafkaProducer,
    results: CommandResults,
    account: Account,
    db: dict[str, asyncpg.Connection],
) -> None:
    create = issue(CreateKey, account.id, KeyAttributes(name="sent-thrice"), key_id=uuid.uuid4())
    await send(producer, create)
    await send(producer, create)  # a redelivery in the same batch ...
    await results.one(create.command_id)
    await send(producer, create)  # ... and one long after the command was applied

    answers = await results.answers(create.command_id, 3)
    assert len(answers) == 3 and answers[0]["status"] == "accepted"
    assert answers[1] == answers[0] and answers[2] == answers[0]
    stored = await db["keys"].fetch(
        "SELECT event_id FROM events WHERE causation_id = $1", str(create.command_id)
    )
    assert [str(r["event_id"]) for r in stored] == answers[0]["event_ids"]


async def test_commands_that_break_a_rule_are_rejected_with_its_code(
    producer: KafkaProducer,
    results: CommandResults,
    account: Account,
    api: httpx.AsyncClient,
    db: dict[str, asyncpg.Connection],
) -> None:
    theirs = (await api.post("/v1/keys", json={"name": "someone-elses"})).json()
    paused = (await api.post("/v1/keys", json={"name": "already-paused"})).json()
    assert (await api.post(f"/v1/keys/{paused['id']}/disable", json={"reason": "x"})).is_success
    reason = DisableKeyData(reason="fraud suspected")
    unknown = issue(DisableKey, account.id, reason, uuid.uuid4())
    foreign = issue(DisableKey, f"other-{uuid.uuid4().hex[:8]}", reason, uuid.UUID(theirs["id"]))
    twice = issue(DisableKey, account.id, reason, uuid.UUID(paused["id"]))
    for command in (unknown, foreign, twice):
        await send(producer, command)

    answers = await results.wait_for([unknown.command_id, foreign.command_id, twice.command_id])

    codes = {cid: (a.status, a.error.code if a.error else None) for cid, a in answers.items()}
    assert codes == {
        unknown.command_id: ("rejected", "not_found"),
        foreign.command_id: ("rejected", "not_found"),
        twice.command_id: ("rejected", "key_already_disabled"),
    }
    assert (await api.get(f"/v1/keys/{theirs['id']}")).json()["status"] == "active"
    caused = await db["keys"].fetchval(
        "SELECT count(*) FROM events WHERE causation_id = ANY($1::text[])",
        [str(c.command_id) for c in (unknown, foreign, twice)],
    )
    assert caused == 0


async def test_a_burst_of_commands_on_several_keys_keeps_each_rule_and_order(
    producer: KafkaProducer,
    results: CommandResults,
    account: Account,
    db: dict[str, asyncpg.Connection],
) -> None:
    """Sent back to back (the consumer takes them in batches, a partition's in one
    transaction): per key in order, a refusal in the middle stored and harmless to the
    commands around it, a command sent twice applied once, another account's key untouched."""
    first, second = uuid.uuid4(), uuid.uuid4()
    reason = DisableKeyData(reason="burst")
    rename = issue(UpdateKey, account.id, KeyPatch(name="burst-renamed"), first)
    burst = [
        issue(CreateKey, account.id, KeyAttributes(name="burst-first"), key_id=first),
        issue(CreateKey, account.id, KeyAttributes(name="burst-second"), key_id=second),
        rename,
        issue(DisableKey, account.id, reason, first),
        issue(DisableKey, account.id, reason, first),  # already disabled: refused
        rename,  # the same command again: answered alike, applied once
        issue(EnableKey, account.id, EnableKeyData(reason="burst over"), first),
        issue(DisableKey, f"other-{uuid.uuid4().hex[:8]}", reason, second),  # not theirs
        issue(DisableKey, account.id, reason, second),
    ]
    for command in burst:
        await send(producer, command)

    ids = list(dict.fromkeys(c.command_id for c in burst))
    answers = await results.wait_for(ids)
    outcome = [
        (answers[c.command_id].status, (e := answers[c.command_id].error) and e.code) for c in burst
    ]
    assert outcome == [
        ("accepted", None),
        ("accepted", None),
        ("accepted", None),
        ("accepted", None),
        ("rejected", "key_already_disabled"),
        ("accepted", None),
        ("accepted", None),
        ("rejected", "not_found"),
        ("accepted", None),
    ]
    assert (await results.answers(rename.command_id, 2))[1]["event_ids"] == [
        str(e) for e in answers[rename.command_id].event_ids
    ]
    rows = await db["keys"].fetch(
        "SELECT key_id, stream_version, event_type, causation_id FROM events"
        " WHERE key_id = ANY($1::uuid[]) ORDER BY key_id, stream_version",
        [first, second],
    )
    streams = {
        key: [(r["event_type"], r["causation_id"]) for r in rows if r["key_id"] == key]
        for key in (first, second)
    }
    assert streams[first] == [
        ("KeyCreated", str(burst[0].command_id)),
        ("KeyUpdated", str(rename.command_id)),
        ("KeyDisabled", str(burst[3].command_id)),
        ("KeyEnabled", str(burst[6].command_id)),
    ]
    assert streams[second] == [
        ("KeyCreated", str(burst[1].command_id)),
        ("KeyDisabled", str(burst[8].command_id)),
    ]
    for command in burst:
        accepted = answers[command.command_id]
        caused = [r for r in rows if r["causation_id"] == str(command.command_id)]
        assert len(accepted.event_ids) == len(caused)


# --- 50 conflicting commands on one key -------------------------------------------------
ALLOWED_REFUSALS = {"key_already_disabled", "key_already_active", "nothing_to_change"}


async def _contending_http_writes(api: httpx.AsyncClient, key_id: str, count: int) -> list[Any]:
    async def write(i: int) -> httpx.Response:
        if i % 3 == 0:
            return await api.patch(f"/v1/keys/{key_id}", json={"name": f"person-{i}"})
        if i % 3 == 1:
            return await api.post(f"/v1/keys/{key_id}/disable", json={"reason": f"web #{i}"})
        return await api.post(f"/v1/keys/{key_id}/enable")

    return list(await asyncio.gather(*(write(i) for i in range(count))))


async def test_fifty_conflicting_commands_on_one_key_lose_no_update(
    stack: Stack,
    results: CommandResults,
    account: Account,
    api: httpx.AsyncClient,
    db: dict[str, asyncpg.Connection],
) -> None:
    created = (await api.post("/v1/keys", json={"name": "contended"})).json()
    key_id = uuid.UUID(created["id"])
    commands = contending_commands(account.id, key_id, 50)

    # Five sender processes at once, while the owner edits the same key over HTTP.
    _, responses = await asyncio.gather(
        send_from_processes(stack.kafka, commands, processes=5),
        _contending_http_writes(api, created["id"], 21),
    )
    answers = await results.wait_for([c.command_id for c in commands], timeout=60)

    for response in responses:
        assert response.status_code in (200, 409), response.text
        if response.status_code == 409:
            assert response.json()["error"]["code"] in ALLOWED_REFUSALS
    for answer in answers.values():
        assert answer.status == "accepted" or (
            answer.error is not None and answer.error.code in ALLOWED_REFUSALS
        ), answer
    events = await event_store.stream(db["keys"], key_id)
    assert [e.stream_version for e in events] == list(range(1, len(events) + 1))
    accepted = {cid: a.event_ids for cid, a in answers.items() if a.status == "accepted"}
    by_id = {e.event_id: e for e in events}
    for command_id, event_ids in accepted.items():
        assert len(event_ids) == 1
        assert by_id[event_ids[0]].causation_id == str(command_id)
    acknowledged_http = sum(r.status_code == 200 for r in responses)
    assert len(events) == 1 + len(accepted) + acknowledged_http  # every acknowledged change, once

    # Each change was decided on the state just before it: no stale decision slipped in.
    status, name = "active", "contended"
    for event in events[1:]:
        if event.event_type == "KeyDisabled":
            assert status == "active", f"disabled twice in a row at v{event.stream_version}"
            status = "disabled"
        elif event.event_type == "KeyEnabled":
            assert status == "disabled", f"enabled twice in a row at v{event.stream_version}"
            status = "active"
        else:
            assert event.event_type == "KeyUpdated"
            assert event.data["before"]["name"] == name
            name = event.data["after"]["name"]

    folded = replay(events)
    assert folded is not None
    shown = (await api.get(f"/v1/keys/{key_id}")).json()
    assert (shown["name"], shown["status"], shown["version"]) == (name, status, len(events))
    assert (folded.name, folded.status, folded.version) == (name, status, len(events))
    assert shown["disabled_reason"] == folded.disabled_reason
    row = await db["keys"].fetchrow("SELECT * FROM key_state WHERE key_id = $1", key_id)
    assert (row["name"], row["status"], row["version"]) == (name, status, len(events))
    assert row["disabled_reason"] == folded.disabled_reason
    print(  # the spread of outcomes, seen with -s
        f"\n{len(accepted)} commands accepted, {50 - len(accepted)} refused;"
        f" {acknowledged_http} of {len(responses)} HTTP writes applied; {len(events)} events"
    )


# --- a command that keeps losing the race ---------------------------------------------------
async def _transaction_id(conn: asyncpg.Connection) -> int:
    xid: int = await conn.fetchval("SELECT txid_current() % 4294967296")
    return xid


async def test_a_command_that_keeps_conflicting_gets_a_true_and_repeatable_answer(
    stack: Stack,
    producer: KafkaProducer,
    results: CommandResults,
    account: Account,
    api: httpx.AsyncClient,
    db: dict[str, asyncpg.Connection],
) -> None:
    """Eight writers each commit a change to the key just as the command is about to append:
    every attempt of the command loses the race (the service retries a conflict 8 times)."""
    created = (await api.post("/v1/keys", json={"name": "hot-key"})).json()
    key_id = uuid.UUID(created["id"])
    meta = Meta(actor=Actor(type="system", id="racing-writer"), occurred_at=datetime.now(UTC))
    writers = [await asyncpg.connect(stack.database("keys")) for _ in range(MAX_ATTEMPTS)]
    pending = [w.transaction() for w in writers]
    try:
        xids = []
        for version, (writer, tx) in enumerate(zip(writers, pending, strict=True), start=1):
            await tx.start()
            reveal = Change("KeyRevealed", KeyRevealedData())
            await event_store.append(writer, key_id, account.id, version, [reveal], meta)
            xids.append(await _transaction_id(writer))
        disable = issue(DisableKey, account.id, DisableKeyData(reason="hot"), key_id)
        await send(producer, disable)
        for xid, tx in zip(xids, pending, strict=True):

            async def command_waits_on_writer(xid: int = xid) -> bool:
                waiting: bool = await db["keys"].fetchval(
                    "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'transactionid'"
                    " AND NOT granted AND transactionid::text::bigint = $1",
                    xid,
                )
                return waiting

            await wait_until(command_waits_on_writer, timeout=60, what="the command to block")
            await tx.commit()  # the command's append now conflicts with this one
        await results.one(disable.command_id)
    finally:
        for writer in writers:
            await writer.close()  # rolls back whatever was not committed

    await send(producer, disable)  # the sender, unsure, sends the same command again
    first, second = await results.answers(disable.command_id, 2)
    # Leave the key's read model consistent with its events for later scenarios.
    assert (await api.delete(f"/v1/keys/{key_id}")).status_code == 200

    # Losing the race is not an invalid command: either it is applied in the end, or it is
    # refused as a conflict; and that answer is kept for a repetition of the command.
    code = first["error"]["code"] if first["error"] else None
    assert first["status"] == "accepted" or code == "version_conflict", first
    assert second == first
