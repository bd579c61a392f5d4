"""Audit reads three topics with no order between them: a rejected command or an alert may
be read before the key's events. The record still ends up naming the key, with the name it
had at the time, whichever topic came first."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from contracts import (
    KEYS_COMMAND_RESULTS,
    USAGE_ALERTS,
    Actor,
    CommandResult,
    KeyCreated,
    KeyCreatedData,
    KeyUpdated,
    KeyUpdatedData,
)
from contracts.examples import example_alert
from servicekit.kafka import KafkaProducer
from tests.support.accounts import Account
from tests.support.audit import SCRIPT_ACTOR, audit_get, publish
from tests.support.stack import Stack
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack
BILLING = Actor(type="service", id="billing")


def key_life(
    account_id: str, key_id: uuid.UUID, created_at: datetime, renamed_at: datetime
) -> list[Any]:
    """The key's events: created as "before", renamed "after" at `renamed_at`."""
    common: dict[str, Any] = {"key_id": key_id, "account_id": account_id, "actor": SCRIPT_ACTOR}
    base = 10**15 + uuid.uuid4().int % 10**12
    return [
        KeyCreated(
            event_id=uuid.uuid4(),
            stream_version=1,
            position=base,
            occurred_at=created_at,
            data=KeyCreatedData(name="before", prefix="ig_test_Ab3d"),
            **common,
        ),
        KeyUpdated(
            event_id=uuid.uuid4(),
            stream_version=2,
            position=base + 1,
            occurred_at=renamed_at,
            data=KeyUpdatedData(before={"name": "before"}, after={"name": "after"}),
            **common,
        ),
    ]


async def record_of(audit: httpx.AsyncClient, key_id: uuid.UUID, source_id: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        page = await audit_get(audit, "/v1/audit/events", key_id=str(key_id))
        assert page.status_code in (200, 404), page.text  # 404 until audit knows the key
        items = page.json().get("items", []) if page.status_code == 200 else []
        return next((i for i in items if i["source_id"] == source_id), None)

    record = await wait_until(found, timeout=60, what=f"the audit record {source_id}")
    assert record is not None
    return record


async def name_of(audit: httpx.AsyncClient, key_id: uuid.UUID, source_id: str, name: str) -> None:
    async def named() -> bool:
        record = await record_of(audit, key_id, source_id)
        return bool(record["target"]["key_name"] == name)

    await wait_until(named, timeout=60, what=f"{source_id} naming its key {name!r}")


async def test_a_rejection_read_before_the_keys_events_names_the_key_once_they_are_read(
    stack: Stack, account: Account, producer: KafkaProducer
) -> None:
    key_id = uuid.uuid4()
    rejected = CommandResult.rejected(
        uuid.uuid4(), "key_already_disabled", "the key is disabled already", key_id=key_id
    ).model_copy(update={"account_id": account.id, "command_type": "DisableKey", "actor": BILLING})
    await producer.send(
        KEYS_COMMAND_RESULTS,
        rejected.model_dump_json().encode(),
        key=str(rejected.command_id).encode(),
    )
    source_id = f"result:{rejected.command_id}"
    async with account.client(stack.url("audit")) as audit:
        first = await record_of(audit, key_id, source_id)
        assert first["target"] == {"key_id": str(key_id), "key_name": None}  # nothing known yet
        # Only now the key's events: created before the rejection, renamed after it.
        answered_at = datetime.fromisoformat(first["occurred_at"])
        await publish(
            producer,
            key_life(
                account.id,
                key_id,
                answered_at - timedelta(minutes=5),
                answered_at + timedelta(minutes=5),
            ),
        )
        await name_of(audit, key_id, source_id, "before")
        exported = await audit_get(audit, "/v1/audit/events", key_id=str(key_id), format="csv")
    assert exported.status_code == 200
    rows = {row["source_id"]: row for row in csv.DictReader(io.StringIO(exported.text))}
    assert rows[source_id]["key_name"] == "before"  # every format names it alike


async def test_an_alert_read_before_the_keys_events_names_the_key_once_they_are_read(
    stack: Stack, account: Account, producer: KafkaProducer
) -> None:
    key_id = uuid.uuid4()
    detected_at = datetime.now(UTC).replace(microsecond=0)
    alert = example_alert(key_id=key_id, account_id=account.id).model_copy(
        update={"detected_at": detected_at}
    )
    await producer.send(USAGE_ALERTS, alert.model_dump_json().encode(), key=str(key_id).encode())
    source_id = f"alert:{alert.alert_id}"
    async with account.client(stack.url("audit")) as audit:
        first = await record_of(audit, key_id, source_id)
        assert first["target"]["key_name"] is None
        # Renamed before the alert this time: the alert names the key as it was then.
        await publish(
            producer,
            key_life(
                account.id,
                key_id,
                detected_at - timedelta(hours=2),
                detected_at - timedelta(hours=1),
            ),
        )
        await name_of(audit, key_id, source_id, "after")
