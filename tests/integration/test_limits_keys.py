"""Enforced limits, the keys side (docs/limits.md): limits are attributes of a key like any
other, and every keys process decides at /v1/verify from the states the usage service
publishes on `usage.limits` (published here by the test, as the usage service would)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts import (
    KEYS_COMMAND_RESULTS,
    USAGE_LIMITS,
    USAGE_RECORDS,
    KeyPatch,
    LimitState,
    UpdateKey,
    UsageRecord,
    window_bounds,
)
from contracts.limits import LimitName, LimitWindow
from servicekit.kafka import KafkaProducer
from tests.support.accounts import Account, keys_cli
from tests.support.kafka import Record, TopicTail
from tests.support.keys_processes import CommandResults, another_keys_instance, issue, send
from tests.support.stack import Stack
from tests.support.usage import create_key
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack
ALL_LIMITS: dict[str, Any] = {
    "rate_limit_per_minute": 600,
    "rate_limit_per_hour": 1000,
    "rate_limit_per_day": 10000,
    "token_budget": {"tokens": 10000, "period": "day"},
    "allowed_cidrs": ["203.0.113.0/24", "2001:db8::/32"],
}
INSIDE = "203.0.113.9"


async def _verify(client: httpx.AsyncClient, secret: str, **extra: Any) -> dict[str, Any]:
    response = await client.post("/v1/verify", json={"key": secret, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _answers(client: httpx.AsyncClient, secret: str, code: str, **extra: Any) -> Any:
    """Wait until `client`'s keys process answers `code` for `secret`; that answer."""

    async def answered() -> dict[str, Any] | None:
        body = await _verify(client, secret, **extra)
        return body if body["code"] == code else None

    return await wait_until(answered, timeout=30, interval=0.02, what=f"{code} from {client}")


async def _publish_state(
    producer: KafkaProducer,
    key: dict[str, Any],
    state: str,
    name: LimitName,
    until: datetime,
    counted: int,
    limit: int,
) -> LimitState:
    """A key's limit state on usage.limits, keyed by key_id, as the usage service sends it."""
    message = LimitState(
        key_id=uuid.UUID(key["id"]),
        account_id=key["account_id"],
        state=state,
        limit_name=None if state == "clear" else name,
        until=None if state == "clear" else until,
        counted=counted,
        limit=limit,
        as_of=datetime.now(UTC),
        windows={name: LimitWindow(counted=counted, limit=limit, reset_at=until)},
    )
    await producer.send(USAGE_LIMITS, message.model_dump_json().encode(), key=key["id"].encode())
    return message


def _window_end(name: LimitName, period: str | None = None) -> datetime:
    return window_bounds(name, period, datetime.now(UTC))[1]  # type: ignore[arg-type]


async def _window_end_with_room(
    name: LimitName, period: str | None = None, room: float = 30.0
) -> datetime:
    """The end of the current UTC window of `name` once at least `room` seconds of it are
    left, so a state for it outlives the waits of a scenario on a loaded machine (a run
    that starts at hh:59:55 would otherwise see the hour end before it looks)."""

    async def roomy() -> datetime | None:
        end = _window_end(name, period)
        return end if end.timestamp() - time.time() >= room else None

    found = await wait_until(roomy, timeout=room + 5, interval=0.5, what=f"room in {name}")
    assert found is not None
    return found


def _assert_retry(body: dict[str, Any], until: datetime, asked: float) -> None:
    """retry_after_seconds says when the window ends, as seen when the answer was given:
    `asked` is read after the answer came, a loaded machine's seconds later at most."""
    assert datetime.fromisoformat(body["reset_at"]) == until
    left = until.timestamp() - asked
    assert left - 2 <= body["retry_after_seconds"] <= left + 10, (body, left)


async def test_limits_are_attributes_with_history_as_of_and_commands(
    api: httpx.AsyncClient, account: Account, producer: KafkaProducer, stack: Stack
) -> None:
    key = await create_key(api, name="limited", **ALL_LIMITS)
    assert {name: key[name] for name in ALL_LIMITS} == ALL_LIMITS
    before_patch = datetime.now(UTC)
    patched = await api.patch(
        f"/v1/keys/{key['id']}",
        json={"token_budget": {"tokens": 20000, "period": "month"}, "allowed_cidrs": []},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["token_budget"] == {"tokens": 20000, "period": "month"}
    assert patched.json()["allowed_cidrs"] == []
    then = await api.get(f"/v1/keys/{key['id']}", params={"as_of": before_patch.isoformat()})
    assert then.json()["token_budget"] == ALL_LIMITS["token_budget"]
    assert then.json()["allowed_cidrs"] == ALL_LIMITS["allowed_cidrs"]
    history = (await api.get(f"/v1/keys/{key['id']}/events")).json()["items"]
    assert history[0]["event_type"] == "KeyUpdated"
    assert history[0]["data"]["before"]["allowed_cidrs"] == ALL_LIMITS["allowed_cidrs"]
    assert history[0]["data"]["after"]["token_budget"] == {"tokens": 20000, "period": "month"}
    assert history[-1]["data"]["rate_limit_per_minute"] == 600

    async with TopicTail(stack.kafka, KEYS_COMMAND_RESULTS) as tail:
        results = CommandResults(tail)
        patch = KeyPatch(rate_limit_per_day=None, allowed_cidrs=["198.51.100.0/24"])
        command = issue(UpdateKey, account.id, patch, uuid.UUID(key["id"]))
        await send(producer, command)
        assert (await results.one(command.command_id)).status == "accepted"
    now = (await api.get(f"/v1/keys/{key['id']}")).json()
    assert (now["rate_limit_per_day"], now["allowed_cidrs"]) == (None, ["198.51.100.0/24"])

    # An operator, with the CLI: changes what is given, removes what is cleared.
    done = await asyncio.to_thread(
        keys_cli,
        stack,
        *("set-limits", key["id"], "--account", account.id, "--per-day", "500"),
        *("--token-budget", "7000/day", "--clear", "allowed_cidrs", "--json"),
    )
    shown = json.loads(done.stdout)
    assert (shown["rate_limit_per_day"], shown["allowed_cidrs"]) == (500, [])
    assert shown["token_budget"] == {"tokens": 7000, "period": "day"}


@pytest.mark.parametrize(
    "networks", [["203.0.113.9/24"], ["203.0.113.0/33"], ["no network"], ["::1", "::1/128"]]
)
async def test_a_malformed_network_is_a_422_naming_the_field(
    api: httpx.AsyncClient, networks: list[str]
) -> None:
    created = await api.post("/v1/keys", json={"name": "bad", "allowed_cidrs": networks})
    assert created.status_code == 422, created.text
    assert "allowed_cidrs" in created.text
    key = await create_key(api, name="good")
    patched = await api.patch(f"/v1/keys/{key['id']}", json={"allowed_cidrs": networks})
    assert patched.status_code == 422 and "allowed_cidrs" in patched.text


async def test_networks_allow_their_addresses_and_refusals_reach_usage_records(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    key = await create_key(api, name="office only", allowed_cidrs=ALL_LIMITS["allowed_cidrs"])
    async with TopicTail(stack.kafka, USAGE_RECORDS) as records:
        assert (await _verify(api, key["key"], source_ip=INSIDE))["code"] == "valid"
        assert (await _verify(api, key["key"], source_ip="2001:db8::7"))["code"] == "valid"
        assert (await _verify(api, key["key"], source_ip="::ffff:203.0.113.9"))["valid"]
        for outside in ("198.51.100.9", "2001:db9::1", None):
            extra = {"endpoint": "/v1/generate", "model": "instagen-xl"}
            if outside is not None:
                extra["source_ip"] = outside
            body = await _verify(api, key["key"], **extra)
            assert (body["valid"], body["code"]) == (False, "ip_not_allowed"), outside

        def three_refusals(seen: list[Record]) -> bool:
            return len(_of_key(seen, key["id"])) >= 3

        refused = _of_key(await records.collect(three_refusals), key["id"])
    assert {r.status_code for r in refused} == {403}
    assert {r.source_ip for r in refused} >= {"198.51.100.9", "2001:db9::1"}
    assert {(r.endpoint, r.model) for r in refused} == {("/v1/generate", "instagen-xl")}


def _of_key(records: list[Record], key_id: str) -> list[UsageRecord]:
    """The key's records (keyed by key_id; other scenarios put other things there too)."""
    return [
        UsageRecord.model_validate_json(r.value or b"") for r in records if r.key == key_id.encode()
    ]


async def test_one_verifier_refuses_past_a_limit_by_its_own_count(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    key = await create_key(api, name="three a day", rate_limit_per_day=3)
    day_end = await _window_end_with_room("rate_limit_per_day", room=30)  # 4 answers, 1 day
    async with TopicTail(stack.kafka, USAGE_RECORDS) as records:
        answers = [await _verify(api, key["key"]) for _ in range(4)]
        assert [a["code"] for a in answers] == ["valid", "valid", "valid", "rate_limited"]
        assert [a["limits"]["rate_limit_per_day"]["remaining"] for a in answers[:3]] == [2, 1, 0]
        _assert_retry(answers[3], day_end, time.time())

        def refusal(seen: list[Record]) -> bool:
            return bool(_of_key(seen, key["id"]))

        refused = _of_key(await records.collect(refusal), key["id"])
    assert refused[0].status_code == 429


async def test_a_published_state_refuses_on_every_instance_until_it_ends_or_the_limit_rises(
    api: httpx.AsyncClient, account: Account, producer: KafkaProducer, stack: Stack, tmp_path: Path
) -> None:
    rated = await create_key(api, name="rated", rate_limit_per_minute=100)
    budgeted = await create_key(
        api, name="budgeted", token_budget={"tokens": 10000, "period": "day"}
    )
    async with (
        another_keys_instance(stack, tmp_path / "keys-b.log") as b_url,
        account.client(b_url) as on_b,
    ):
        for client in (api, on_b):  # both cache the keys as valid first
            assert (await _verify(client, rated["key"]))["code"] == "valid"
            assert (await _verify(client, budgeted["key"]))["code"] == "valid"

        minute_end = await _window_end_with_room("rate_limit_per_minute", room=30)
        await _publish_state(
            producer, rated, "rate_limited", "rate_limit_per_minute", minute_end, 100, 100
        )
        for client in (api, on_b):
            body = await _answers(client, rated["key"], "rate_limited")
            _assert_retry(body, minute_end, time.time())
            assert body["limit_name"] == "rate_limit_per_minute"

        # A state whose end has passed is no state: the window rolled over.
        soon = datetime.now(UTC) + timedelta(seconds=2)
        await _publish_state(
            producer, rated, "rate_limited", "rate_limit_per_minute", soon, 100, 100
        )
        for client in (api, on_b):
            await _answers(client, rated["key"], "valid")

        day_end = await _window_end_with_room("token_budget", "day", room=60)
        await _publish_state(
            producer, budgeted, "budget_exhausted", "token_budget", day_end, 12000, 10000
        )
        for client in (api, on_b):
            body = await _answers(client, budgeted["key"], "budget_exhausted")
            _assert_retry(body, day_end, time.time())

        raised = await api.patch(
            f"/v1/keys/{budgeted['id']}", json={"token_budget": {"tokens": 20000, "period": "day"}}
        )
        assert raised.status_code == 200, raised.text
        body = await _verify(api, budgeted["key"])  # at once where the change was made
        assert body["code"] == "valid" and body["limits"]["token_budget"]["remaining"] == 8000
        await _answers(on_b, budgeted["key"], "valid")


async def test_an_instance_started_later_knows_every_state_before_it_is_ready(
    api: httpx.AsyncClient, account: Account, producer: KafkaProducer, stack: Stack, tmp_path: Path
) -> None:
    key = await create_key(api, name="limited before", rate_limit_per_hour=1000)
    # Its state must outlive the waits below, a keys process's start among them.
    hour_end = await _window_end_with_room("rate_limit_per_hour", room=120)
    await _publish_state(producer, key, "rate_limited", "rate_limit_per_hour", hour_end, 1000, 1000)
    await _answers(api, key["key"], "rate_limited")  # published and read
    log = tmp_path / "keys-c.log"
    async with another_keys_instance(stack, log) as c_url, account.client(c_url) as on_c:
        body = await _verify(on_c, key["key"])  # its first answer, no waiting
        assert body["code"] == "rate_limited", body
        _assert_retry(body, hour_end, time.time())
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        events = [line.get("event") for line in lines]
        assert events.index("limit_states_read") < events.index("started"), events
