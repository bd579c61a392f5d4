"""Webhooks end to end: a disabled key tried raises a critical alert, which a usage
process of the test's own (allowed to post over http to 127.0.0.1, retrying fast) posts,
signed, to a real HTTP receiver run by the test; through failures, and a SIGKILL."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from contracts import USAGE_ALERTS, Alert
from contracts.examples import example_alert
from servicekit.kafka import KafkaProducer
from tests.support.accounts import Account, new_account
from tests.support.processes import free_port, spawn
from tests.support.stack import Stack
from tests.support.usage import (
    UsageInstance,
    create_key,
    groups_from_now,
    now_minute,
    publish,
    steady,
    usage_instance,
)
from tests.support.wait import wait_until
from tests.support.webhooks import Delivered, Receiver, receiver, verify

pytestmark = pytest.mark.stack

FAST_RETRIES = {
    "USAGE_WEBHOOKS_ALLOW_HTTP": "true",
    "USAGE_WEBHOOKS_ALLOW_PRIVATE": "true",
    "USAGE_WEBHOOKS_BACKOFF_BASE_SECONDS": "0.3",
    "USAGE_WEBHOOKS_BACKOFF_CAP_SECONDS": "1",
    "USAGE_WEBHOOKS_POLL_SECONDS": "0.2",
    "USAGE_WEBHOOKS_TIMEOUT_SECONDS": "2",
}


@contextlib.asynccontextmanager
async def delivering_usage(stack: Stack, log: Path) -> AsyncIterator[UsageInstance]:
    """A usage process reading the stack's topics in groups of its own (so it sees the
    keys service's refusals and raises the alerts itself, as the stack's usage does)."""
    async with usage_instance(
        stack,
        log,
        "usage.records",
        **await groups_from_now(stack, "usage.records"),
        USAGE_WEBHOOKS_CONSUMER_GROUP=f"usage-webhooks-test-{uuid.uuid4().hex[:8]}",
        **FAST_RETRIES,
    ) as usage:
        yield usage


async def create_webhook(
    account: Account, usage_url: str, url: str, **settings: Any
) -> dict[str, Any]:
    async with account.client(usage_url) as client:
        response = await client.post("/v1/webhooks", json={"url": url, **settings})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["secret"].startswith("whsec_")
    return body


async def deliveries(account: Account, usage_url: str, webhook_id: str) -> list[dict[str, Any]]:
    async with account.client(usage_url) as client:
        response = await client.get(f"/v1/webhooks/{webhook_id}/deliveries")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def logged_as(
    account: Account, usage_url: str, webhook_id: str, **expected: object
) -> dict[str, Any]:
    """The webhook's one delivery, once its log entry says what is `expected`."""

    async def logged() -> list[dict[str, Any]]:
        found = await deliveries(account, usage_url, webhook_id)
        return found if found and expected.items() <= found[0].items() else []

    (entry,) = await wait_until(logged, what=f"the delivery logged with {expected}")
    return entry


async def use_a_disabled_key(
    api: httpx.AsyncClient, producer: KafkaProducer, account: Account
) -> dict[str, Any]:
    """`make demo`'s disabled_key_in_use scenario: traffic, the key disabled, its secret
    still tried (the keys service refuses it and reports each refusal to usage)."""
    key = await create_key(api, name="old integration")
    await publish(producer, steady(key["id"], account.id, now_minute(30), 10, 5))
    disabled = await api.post(f"/v1/keys/{key['id']}/disable", json={"reason": "leaked"})
    assert disabled.status_code == 200, disabled.text
    for _ in range(3):
        verdict = await api.post("/v1/verify", json={"key": key["key"]})
        assert verdict.json()["code"] == "disabled"
    return key


async def settled(
    account: Account, usage_url: str, webhook_id: str, count: int
) -> list[dict[str, Any]]:
    """The webhook's deliveries, once there are `count` and none is pending any more."""

    async def done() -> list[dict[str, Any]]:
        found = await deliveries(account, usage_url, webhook_id)
        finished = len(found) >= count and all(d["status"] != "pending" for d in found)
        return found if finished else []

    return await wait_until(done, timeout=60, what=f"{count} deliveries settled in the log")


async def arrivals(hook: Receiver, count: int, timeout: float = 60) -> list[Delivered]:
    async def arrived() -> list[Delivered]:
        taken = hook.taken()
        return taken if len(taken) >= count else []

    return await wait_until(arrived, timeout=timeout, what=f"{count} deliveries")


def assert_signed(delivered: Delivered, secret: str) -> Alert:
    assert verify(secret, delivered.headers["instagen-signature"], delivered.body)
    assert not verify("whsec_another", delivered.headers["instagen-signature"], delivered.body)
    alert = Alert.model_validate_json(delivered.body)
    assert delivered.headers["instagen-delivery-id"] == str(alert.alert_id)
    assert delivered.headers["content-type"] == "application/json"
    return alert


async def test_a_critical_alert_is_posted_signed_and_retried_after_each_failure(
    stack: Stack,
    producer: KafkaProducer,
    api: httpx.AsyncClient,
    account: Account,
    tmp_path: Path,
) -> None:
    with receiver() as hook:
        async with delivering_usage(stack, tmp_path / "usage.log") as usage:
            webhook = await create_webhook(
                account, usage.url, hook.url, kinds=["disabled_key_in_use"],
                min_severity="critical",
            )  # fmt: skip
            hook.answer(500, 500, 500)  # then 200
            key = await use_a_disabled_key(api, producer, account)
            taken = await arrivals(hook, 4)
            first = assert_signed(taken[0], webhook["secret"])
            assert (first.kind, first.severity) == ("disabled_key_in_use", "critical")
            assert str(first.key_id) == key["id"] and first.account_id == account.id
            # The acceptance criterion: at the receiver within 5 s of the detection.
            assert taken[0].at - first.detected_at.timestamp() < 5.0
            # Sent again after each 500, the same bytes, each time signed anew.
            assert [d.answered for d in taken] == [500, 500, 500, 200]
            assert {d.body for d in taken} == {taken[0].body}
            for delivered in taken:
                assert_signed(delivered, webhook["secret"])
            assert orjson.loads(taken[0].body)["alert_id"] == str(first.alert_id)
            entry = await logged_as(account, usage.url, webhook["id"], status="delivered")
            assert entry["alert_id"] == str(first.alert_id)
            assert (entry["attempts"], entry["last_status_code"]) == (4, 200)
            assert entry["last_error"] is None and entry["delivered_at"] is not None
            assert len(hook.taken()) == 4  # delivered: never sent again
        log = (tmp_path / "usage.log").read_text(errors="replace")
        assert webhook["secret"] not in log and "whsec_" not in log


async def test_a_delivery_retried_when_its_service_is_killed_arrives_after_the_restart(
    stack: Stack,
    producer: KafkaProducer,
    api: httpx.AsyncClient,
    account: Account,
    tmp_path: Path,
) -> None:
    with receiver() as hook:
        async with delivering_usage(stack, tmp_path / "usage.log") as usage:
            webhook = await create_webhook(account, usage.url, hook.url, min_severity="critical")
            hook.answer(*[503] * 1000)
            await use_a_disabled_key(api, producer, account)
            await arrivals(hook, 2)
            await logged_as(
                account, usage.url, webhook["id"], status="pending", last_error="HTTP 503"
            )
            usage.kill()  # SIGKILL, between two tries
            killed_after = len(hook.taken())
            hook.answer()  # the receiver is fixed meanwhile
            usage.restart()
            await usage.wait_ready()
            await arrivals(hook, killed_after + 1)
            entry = await logged_as(account, usage.url, webhook["id"], status="delivered")
            succeeded = [d for d in hook.taken() if d.answered == 200]
            assert 1 <= len(succeeded) <= 2  # at most once more than needed
            assert_signed(succeeded[0], webhook["secret"])
            # Tries to one webhook go one at a time, and each is logged once answered: the
            # one the kill interrupted may have reached the receiver and not the log. So the
            # log holds every other try before the kill, and the one that succeeded.
            assert entry["attempts"] >= killed_after


async def test_a_webhook_failing_past_the_give_up_time_is_disabled_with_an_alert(
    stack: Stack,
    producer: KafkaProducer,
    api: httpx.AsyncClient,
    account: Account,
    tmp_path: Path,
) -> None:
    # The give-up time is 24 h in production; 2 s here.
    with receiver("/broken") as broken, receiver("/ops") as ops:
        async with usage_instance(
            stack, tmp_path / "usage.log", "usage.records",
            **await groups_from_now(stack, "usage.records"),
            USAGE_WEBHOOKS_CONSUMER_GROUP=f"usage-webhooks-test-{uuid.uuid4().hex[:8]}",
            USAGE_WEBHOOKS_GIVE_UP_SECONDS="2", **FAST_RETRIES,
        ) as usage:  # fmt: skip
            failing = await create_webhook(account, usage.url, broken.url)
            told = await create_webhook(account, usage.url, ops.url, kinds=["webhook_disabled"])
            broken.answer(*[500] * 1000)
            await use_a_disabled_key(api, producer, account)
            (notice,) = await arrivals(ops, 1)
            alert = assert_signed(notice, told["secret"])
            assert (alert.kind, alert.severity) == ("webhook_disabled", "warning")
            origin = broken.url.removesuffix("/broken")
            assert alert.evidence == {"webhook_id": failing["id"], "origin": origin}
            assert alert.account_id == account.id and str(alert.key_id) == failing["id"]
            (entry,) = await deliveries(account, usage.url, failing["id"])
            assert entry["status"] == "failed" and entry["attempts"] >= 2
            assert entry["last_error"].startswith("HTTP 500")
            listed = {w["id"]: w for w in await _listed(account, usage.url)}
            assert listed[failing["id"]]["status"] == "disabled"
            assert listed[told["id"]]["status"] == "active"
            tried = len(broken.taken())
            await use_a_disabled_key(api, producer, account)  # a second alert: not sent
            await wait_until(  # as long as the first: the instance reads usage.records whole
                lambda: _alerts_stored(usage.database, account.id, 2),
                timeout=60,
                what="the second key's alert stored",
            )
            assert len(broken.taken()) == tried

            # The receiver is mended and the webhook enabled: the next alert arrives.
            broken.answer()
            async with account.client(usage.url) as client:
                enabled = await client.post(f"/v1/webhooks/{failing['id']}/enable")
                assert enabled.status_code == 200, enabled.text
                shown = await client.get(f"/v1/webhooks/{failing['id']}")
            assert enabled.json()["status"] == "active" and enabled.json()["failing_since"] is None
            assert shown.json() == enabled.json() and "secret" not in shown.json()
            third = await use_a_disabled_key(api, producer, account)

            async def third_arrived() -> list[Delivered]:
                return [d for d in broken.taken() if third["id"].encode() in d.body]

            (delivered, *_) = await wait_until(
                third_arrived, timeout=60, what="the third key's alert"
            )
            alert = assert_signed(delivered, failing["secret"])  # the same secret as before
            assert alert.key_id == uuid.UUID(third["id"]) and delivered.answered == 200


async def _alerts_stored(database: str, account_id: str, count: int) -> bool:
    conn = await asyncpg.connect(database)
    try:
        found = await conn.fetchval(
            "SELECT count(*) FROM alerts WHERE account_id = $1 AND kind = 'disabled_key_in_use'",
            account_id,
        )
    finally:
        await conn.close()
    return bool(found >= count)


def raised(account_id: str, at: datetime, key_id: uuid.UUID | None = None) -> Alert:
    """An alert of the account, detected `at`."""
    alert = example_alert(key_id=key_id, account_id=account_id)
    return alert.model_copy(update={"detected_at": at})


async def test_two_usage_processes_share_the_deliveries_and_send_each_once(
    stack: Stack, producer: KafkaProducer, account: Account, tmp_path: Path
) -> None:
    with receiver() as hook:
        async with delivering_usage(stack, tmp_path / "usage.log") as usage:
            env = {**usage.env, "USAGE_HTTP_PORT": str(free_port())}
            log = tmp_path / "usage-second.log"
            second = UsageInstance(
                f"http://127.0.0.1:{env['USAGE_HTTP_PORT']}", usage.database, env, log,
                spawn("usage", env, log),
            )  # fmt: skip
            try:
                await second.wait_ready()
                webhook = await create_webhook(account, usage.url, hook.url)
                alerts = [raised(account.id, datetime.now(UTC)) for _ in range(60)]
                # Raised a day before the webhook existed: not sent to it. Its key is the
                # last alert's, so it is read (from the same partition) before that one.
                past = raised(account.id, datetime.now(UTC) - timedelta(1), alerts[-1].key_id)
                await producer.send_many(
                    USAGE_ALERTS,
                    [
                        (str(a.key_id).encode(), a.model_dump_json().encode(), ())
                        for a in [past, *alerts]
                    ],
                )
                await arrivals(hook, len(alerts))
                # A try reaches the receiver before its process records the answer: wait
                # until the log (read through the other process) has settled every one.
                logged = await settled(account, second.url, webhook["id"], len(alerts))
                assert {d["status"] for d in logged} == {"delivered"} and len(logged) == 60
                ids = [d.headers["instagen-delivery-id"] for d in hook.taken()]
                assert sorted(ids) == sorted(str(a.alert_id) for a in alerts)  # each once
                for delivered in hook.taken():
                    assert_signed(delivered, webhook["secret"])
            finally:
                await second.stop()


async def test_a_url_on_a_loopback_address_is_refused_with_a_clear_422(
    stack: Stack, account: Account
) -> None:
    # The stack's usage service runs with its production defaults: https only, public only.
    usage_url = stack.url("usage")
    async with account.client(usage_url) as client:
        for url, says in [
            ("https://127.0.0.1:9443/hook", "127.0.0.1, a loopback address"),
            ("https://169.254.169.254/latest", "link-local"),
            ("https://[::ffff:10.0.0.1]/hook", "10.0.0.1), a private address"),
            ("http://203.0.113.9/hook", "https://"),
        ]:
            response = await client.post("/v1/webhooks", json={"url": url})
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert error["code"] == "url_invalid" and says in error["message"], error
        listed = await client.get("/v1/webhooks")
        assert listed.json() == {"items": [], "next_cursor": None}


async def test_another_accounts_webhook_is_not_found(stack: Stack, account: Account) -> None:
    usage_url = stack.url("usage")
    other = await new_account(stack)
    created = await create_webhook(other, usage_url, "https://93.184.216.34/hooks")
    assert "secret" not in (await _listed(other, usage_url))[0]
    async with account.client(usage_url) as client:
        assert (await client.get(f"/v1/webhooks/{created['id']}")).status_code == 404
        assert (await client.post(f"/v1/webhooks/{created['id']}/enable")).status_code == 404
        assert (await client.delete(f"/v1/webhooks/{created['id']}")).status_code == 404
        gone = await client.get(f"/v1/webhooks/{created['id']}/deliveries")
        assert gone.status_code == 404
        assert (await client.get("/v1/webhooks")).json()["items"] == []
    async with other.client(usage_url) as client:
        mine = await client.get(f"/v1/webhooks/{created['id']}")
        assert mine.status_code == 200 and mine.json()["status"] == "active"
        again = await client.post(f"/v1/webhooks/{created['id']}/enable")  # active: unchanged
        assert again.status_code == 200 and again.json() == mine.json()
        assert (await client.delete(f"/v1/webhooks/{created['id']}")).status_code == 204
        assert (await client.delete(f"/v1/webhooks/{created['id']}")).status_code == 404
    assert await _listed(other, usage_url) == []


async def _listed(account: Account, usage_url: str) -> list[dict[str, Any]]:
    async with account.client(usage_url) as client:
        response = await client.get("/v1/webhooks")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items
