"""The audit trail answers "who did what to this key, when, from where, and why", in every
format, and pages through it correctly while records keep arriving."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from contracts import (
    DLQ_CONSUMER_GROUP_HEADER,
    DLQ_ERROR_HEADER,
    KEYS_COMMAND_RESULTS,
    KEYS_COMMANDS,
    KEYS_EVENTS,
    Actor,
    CommandResult,
    DisableKey,
    DisableKeyData,
    dlq,
    event_headers,
)
from servicekit.kafka import KafkaProducer
from tests.support.accounts import Account
from tests.support.audit import audit_get, key_stream, publish, wait_for_records
from tests.support.kafka import TopicTail, header
from tests.support.stack import Stack
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack
BILLING = Actor(type="service", id="billing")
BROWSER = {"User-Agent": "audit-scenario/1.0"}


async def _command(
    stack: Stack, producer: KafkaProducer, account: Account, key_id: str, reason: str
) -> CommandResult:
    command = DisableKey(
        command_id=uuid.uuid4(),
        account_id=account.id,
        key_id=uuid.UUID(key_id),
        actor=BILLING,
        issued_at=datetime.now(UTC),
        correlation_id=f"billing-run-{uuid.uuid4().hex[:6]}",
        data=DisableKeyData(reason=reason),
    )
    wanted = str(command.command_id).encode()
    async with TopicTail(stack.kafka, KEYS_COMMAND_RESULTS) as results:
        await producer.send(KEYS_COMMANDS, command.model_dump_json().encode(), key=key_id.encode())
        records = await results.collect(lambda rs: any(r.key == wanted for r in rs))
    raw = next(r.value for r in records if r.key == wanted)
    return CommandResult.model_validate_json(raw or b"")


async def test_a_scripted_session_reads_back_as_exactly_its_actions_with_their_actors(
    stack: Stack, account: Account, api: httpx.AsyncClient, producer: KafkaProducer
) -> None:
    created = await api.post("/v1/keys", json={"name": "Scenario key"}, headers=BROWSER)
    assert created.status_code == 201, created.text
    key_id = created.json()["id"]
    renamed = await api.patch(
        f"/v1/keys/{key_id}", json={"name": "Scenario key (renamed)"}, headers=BROWSER
    )
    assert renamed.status_code == 200, renamed.text
    disabled = await _command(stack, producer, account, key_id, "invoice unpaid")
    assert disabled.status == "accepted"
    refused = await _command(stack, producer, account, key_id, "invoice still unpaid")
    assert refused.status == "rejected"
    assert (await api.post(f"/v1/keys/{key_id}/reveal", headers=BROWSER)).status_code == 200
    assert (await api.delete(f"/v1/keys/{key_id}", headers=BROWSER)).status_code == 200

    async with account.client(stack.url("audit")) as audit:

        async def all_six() -> list[dict[str, Any]]:
            page = await audit_get(audit, "/v1/audit/events", key_id=key_id)
            assert page.status_code == 200, page.text
            items: list[dict[str, Any]] = page.json()["items"]
            return items if len(items) >= 6 else []

        items = await wait_until(all_six, timeout=60, what="the session's six audit records")
        csv_export = await audit_get(audit, "/v1/audit/events", key_id=key_id, format="csv")
        jsonl_export = await audit_get(audit, "/v1/audit/events", key_id=key_id, format="jsonl")

    assert [i["action"] for i in items] == [
        "key.revoked",
        "key.revealed",
        "command.rejected",
        "key.disabled",
        "key.updated",
        "key.created",
    ]
    person = items[-1]["actor"]
    assert person["type"] == "user" and person["user_agent"] == "audit-scenario/1.0"
    assert person["ip"] == "127.0.0.1"
    billing = BILLING.model_dump()
    assert [i["actor"] for i in items] == [person, person, billing, billing, person, person]
    revoked, revealed, rejected, disabled_record, updated, created_record = items
    assert created_record["target"] == {"key_id": key_id, "key_name": "Scenario key"}
    assert updated["target"]["key_name"] == "Scenario key (renamed)"
    assert updated["details"] == {
        "before": {"name": "Scenario key"},
        "after": {"name": "Scenario key (renamed)"},
    }
    assert disabled_record["details"] == {"reason": "invoice unpaid"}
    assert disabled_record["causation_id"] == str(disabled.command_id)
    assert rejected["outcome"] == "failure"
    # Named whichever audit read first, the rejection or the key's events (issue 11).
    assert rejected["target"] == {"key_id": key_id, "key_name": "Scenario key (renamed)"}
    assert rejected["details"]["command_type"] == "DisableKey"
    assert rejected["details"]["error"]["code"] == "key_already_disabled"
    assert rejected["causation_id"] == str(refused.command_id)
    assert rejected["source_id"] == f"result:{refused.command_id}"
    assert {i["outcome"] for i in (revoked, revealed, disabled_record)} == {"success"}
    assert revealed["details"] == {}
    assert all(i["account_id"] == account.id for i in items)

    assert csv_export.status_code == 200
    assert csv_export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_export.text)))
    assert [r["audit_id"] for r in rows] == [i["audit_id"] for i in items]
    assert [r["action"] for r in rows] == [i["action"] for i in items]
    assert [r["actor_id"] for r in rows] == [i["actor"]["id"] for i in items]
    assert [r["key_name"] for r in rows] == [i["target"]["key_name"] for i in items]
    assert [orjson.loads(r["details"]) for r in rows] == [i["details"] for i in items]
    lines = [orjson.loads(line) for line in jsonl_export.content.splitlines()]
    assert lines == items


async def test_paging_stays_correct_while_records_arrive(
    stack: Stack, account: Account, producer: KafkaProducer, db: dict[str, asyncpg.Connection]
) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    first = key_stream(account.id, keys=6, per_key=5, start=start, step_ms=1000)
    await publish(producer, first.events)
    await wait_for_records(db["audit"], account.id, len(first.events) + 1)  # + the admin key

    seen: list[dict[str, Any]] = []
    async with account.client(stack.url("audit")) as audit:
        params: dict[str, Any] = {"limit": 7, "actor_id": "audit-scenario"}
        page = (await audit_get(audit, "/v1/audit/events", **params)).json()
        seen += page["items"]
        # Newer and older records arrive in the middle of the paging.
        late = key_stream(
            account.id, keys=3, per_key=4, start=start + timedelta(milliseconds=500), step_ms=1000
        )
        newer = key_stream(account.id, keys=2, per_key=2, start=datetime.now(UTC))
        await publish(producer, late.events + newer.events)
        total = len(first.events) + len(late.events) + len(newer.events) + 1
        await wait_for_records(db["audit"], account.id, total)
        while page["next_cursor"]:
            params["cursor"] = page["next_cursor"]
            page = (await audit_get(audit, "/v1/audit/events", **params)).json()
            seen += page["items"]

    ids = [item["source_id"] for item in seen]
    assert len(ids) == len(set(ids)), "a record was served twice"
    assert first.source_ids <= set(ids), "a record that existed before paging was skipped"
    assert not newer.source_ids & set(ids), "a newer record showed up on an older page"
    order = [(item["occurred_at"], item["sequence"]) for item in seen]
    assert order == sorted(order, reverse=True)


async def test_an_event_that_breaks_its_contract_is_dead_lettered_and_the_rest_recorded(
    stack: Stack, producer: KafkaProducer, db: dict[str, asyncpg.Connection]
) -> None:
    stream = key_stream(f"contract-{uuid.uuid4().hex[:12]}", keys=1, per_key=3)
    first, middle, last = stream.events
    broken = orjson.dumps({**middle.model_dump(mode="json"), "stream_version": 0})
    key = str(first.key_id).encode()  # one key: one partition, most likely one batch
    async with TopicTail(stack.kafka, dlq(KEYS_EVENTS)) as dead:
        await producer.send_many(
            KEYS_EVENTS,
            [
                (key, first.model_dump_json().encode(), event_headers(first)),
                (key, broken, event_headers(middle)),
                (key, last.model_dump_json().encode(), event_headers(last)),
            ],
        )
        letters = await dead.collect(
            lambda rs: any(
                r.value == broken and header(r, DLQ_CONSUMER_GROUP_HEADER) == "audit" for r in rs
            )
        )
    letter = next(r for r in letters if header(r, DLQ_CONSUMER_GROUP_HEADER) == "audit")
    assert "stream_version" in (header(letter, DLQ_ERROR_HEADER) or "")
    await wait_for_records(db["audit"], stream.account_id, 2)
    stored = await db["audit"].fetch(
        "SELECT source_id FROM audit_records WHERE account_id = $1 ORDER BY seq",
        stream.account_id,
    )
    assert [r["source_id"] for r in stored] == [f"event:{first.event_id}", f"event:{last.event_id}"]


async def test_an_event_delivered_again_is_recorded_once(
    stack: Stack, producer: KafkaProducer, db: dict[str, asyncpg.Connection]
) -> None:
    stream = key_stream(f"again-{uuid.uuid4().hex[:12]}", keys=1, per_key=4)
    first, second, third, fourth = stream.events
    await publish(producer, [first, second])
    await wait_for_records(db["audit"], stream.account_id, 2)
    # Again, alone (a redelivered batch), then twice within one batch: one key, one partition,
    # so once the last event is recorded, the copies before it were read.
    await publish(producer, [first])
    await publish(producer, [second, third, second, fourth])
    await wait_for_records(db["audit"], stream.account_id, 4)
    stored = await db["audit"].fetch(
        "SELECT seq, source_id FROM audit_records WHERE account_id = $1 ORDER BY seq",
        stream.account_id,
    )
    assert [(r["seq"], r["source_id"]) for r in stored] == [
        (n, f"event:{e.event_id}") for n, e in enumerate(stream.events, start=1)
    ]
