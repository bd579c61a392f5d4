"""Limits enforced end to end (issue 12): gateways report requests on `usage.records`, the
usage service counts them and publishes each key's state on `usage.limits`, and every keys
instance refuses a key over its limit until its window ends, without a manual step.

Each scenario publishes usage records as a gateway would and asks `POST /v1/verify` on two
keys processes. The waits have generous deadlines for a loaded machine: how fast the state
travels is `make bench`'s figure (limits_propagation), not an assertion here.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts import LimitName, UsageRecord, window_bounds
from servicekit.kafka import KafkaProducer
from tests.support.accounts import Account
from tests.support.keys_processes import another_keys_instance
from tests.support.processes import SERVICE, another_instance, restart_service
from tests.support.stack import Stack
from tests.support.usage import publish
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack

STATE_DEADLINE = 30.0
"""How long a test waits for a state to reach every instance (the bench measures the time)."""


def _records(key: dict[str, Any], count: int, at: datetime, tokens: int = 0) -> list[UsageRecord]:
    return [
        UsageRecord(
            record_id=uuid.uuid4(),
            key_id=uuid.UUID(key["id"]),
            account_id=key["account_id"],
            occurred_at=at,
            source_ip="203.0.113.7",
            user_agent="instagen-python/2.4",
            endpoint="/v1/generate",
            model="instagen-xl",
            status_code=200,
            tokens_in=tokens // 5,
            tokens_out=tokens - tokens // 5,
            latency_ms=100.0,
        )
        for _ in range(count)
    ]


async def _create(api: httpx.AsyncClient, **attributes: Any) -> dict[str, Any]:
    answer = await api.post("/v1/keys", json={"name": "limited", **attributes})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def _verdict(client: httpx.AsyncClient, secret: str) -> dict[str, Any]:
    answer = await client.post("/v1/verify", json={"key": secret})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def _wait_code(
    clients: Sequence[httpx.AsyncClient], secret: str, code: str, timeout: float = STATE_DEADLINE
) -> list[dict[str, Any]]:
    """Every instance answers `code` for `secret`; returns their answers."""
    return (await _wait_code_asked(clients, secret, code, timeout))[1]


async def _wait_code_asked(
    clients: Sequence[httpx.AsyncClient], secret: str, code: str, timeout: float = STATE_DEADLINE
) -> tuple[datetime, list[dict[str, Any]]]:
    """Every instance answers `code` for `secret`; when the answers were asked for (each
    was given after that), and the answers."""

    async def every() -> tuple[datetime, list[dict[str, Any]]] | None:
        asked = datetime.now(UTC)
        answers = [await _verdict(client, secret) for client in clients]
        return (asked, answers) if all(a["code"] == code for a in answers) else None

    found = await wait_until(
        every, timeout=timeout, interval=0.05, what=f"{code} on every keys instance"
    )
    assert found is not None
    return found


async def _room_in_window(limit_name: LimitName, at_least: float) -> None:
    """Wait until the current window of `limit_name` has `at_least` seconds to go, so a
    burst and the answers about it fall in one window (a run at 59 minutes past the hour
    would otherwise see the hour end before it looks)."""

    async def room() -> bool:
        now = datetime.now(UTC)
        _, end = window_bounds(limit_name, "day", now)
        return (end - now).total_seconds() >= at_least

    await wait_until(room, timeout=at_least + 5, interval=0.2, what=f"room in {limit_name}")


async def test_a_key_over_its_hourly_rate_is_refused_by_every_instance_until_the_hour_ends(
    stack: Stack, account: Account, api: httpx.AsyncClient, producer: KafkaProducer, tmp_path: Path
) -> None:
    key = await _create(api, rate_limit_per_hour=100)
    async with (
        another_keys_instance(stack, tmp_path / "keys-b.log") as b_url,
        account.client(b_url) as on_b,
    ):
        # Once B is up (its start takes seconds of the window on a loaded machine).
        await _room_in_window("rate_limit_per_hour", STATE_DEADLINE)
        first = await _verdict(on_b, key["key"])
        assert first["code"] == "valid"
        assert first["limits"]["rate_limit_per_hour"]["limit"] == 100

        at = datetime.now(UTC)
        await publish(producer, _records(key, 150, at))
        asked, answers = await _wait_code_asked([api, on_b], key["key"], "rate_limited")

        _, hour_end = window_bounds("rate_limit_per_hour", None, at)
        for answer in answers:
            assert answer["valid"] is False
            assert datetime.fromisoformat(answer["reset_at"]) == hour_end
            # Retry-after counts down to the end of the hour the requests were counted in:
            # the whole seconds left when the answer was given, between `asked` and now.
            left_when_asked = math.ceil((hour_end - asked).total_seconds())
            left_now = (hour_end - datetime.now(UTC)).total_seconds()
            assert left_now <= answer["retry_after_seconds"] <= left_when_asked


async def test_a_per_minute_limit_lets_the_key_in_again_when_its_minute_ends(
    stack: Stack, account: Account, api: httpx.AsyncClient, producer: KafkaProducer, tmp_path: Path
) -> None:
    key = await _create(api, rate_limit_per_minute=100)
    async with (
        another_keys_instance(stack, tmp_path / "keys-b.log") as b_url,
        account.client(b_url) as on_b,
    ):
        await _room_in_window("rate_limit_per_minute", STATE_DEADLINE)
        at = datetime.now(UTC)
        await publish(producer, _records(key, 150, at))
        answers = await _wait_code([api, on_b], key["key"], "rate_limited")
        _, minute_end = window_bounds("rate_limit_per_minute", None, at)
        assert {datetime.fromisoformat(a["reset_at"]) for a in answers} == {minute_end}

        # No one lifts it: the window ends and every instance lets the key in again.
        again = await _wait_code([api, on_b], key["key"], "valid", timeout=90)
        assert datetime.now(UTC) >= minute_end
        assert all(a["limits"]["rate_limit_per_minute"]["remaining"] > 0 for a in again)


async def test_a_spent_token_budget_refuses_the_key_until_it_is_raised(
    stack: Stack, account: Account, api: httpx.AsyncClient, producer: KafkaProducer, tmp_path: Path
) -> None:
    key = await _create(api, token_budget={"tokens": 10_000, "period": "day"})
    async with (
        another_keys_instance(stack, tmp_path / "keys-b.log") as b_url,
        account.client(b_url) as on_b,
    ):
        await _room_in_window("token_budget", STATE_DEADLINE)
        at = datetime.now(UTC)
        await publish(producer, _records(key, 12, at, tokens=1_000))  # 12,000 tokens
        answers = await _wait_code([api, on_b], key["key"], "budget_exhausted")
        _, day_end = window_bounds("token_budget", "day", at)
        assert {datetime.fromisoformat(a["reset_at"]) for a in answers} == {day_end}
        assert all(a["retry_after_seconds"] > 0 for a in answers)

        raised = await on_b.patch(
            f"/v1/keys/{key['id']}", json={"token_budget": {"tokens": 20_000, "period": "day"}}
        )
        assert raised.status_code == 200, raised.text
        again = await _wait_code([api, on_b], key["key"], "valid")
        for answer in again:
            budget = answer["limits"]["token_budget"]
            assert budget["limit"] == 20_000
            assert budget["remaining"] <= 8_000


async def test_limits_hold_through_sigkill_of_the_keys_and_usage_processes(
    stack: Stack, account: Account, api: httpx.AsyncClient, producer: KafkaProducer, tmp_path: Path
) -> None:
    """Mid-burst, the stack's keys process, a second keys process and the usage service die
    with SIGKILL and start again: a key that crossed its limit is refused once they are back,
    and a key that stayed under it is not (no state lost, none invented)."""
    crossed = await _create(api, rate_limit_per_hour=100, name="crossed")
    under = await _create(api, rate_limit_per_hour=1000, name="under")
    await _room_in_window("rate_limit_per_hour", 2 * STATE_DEADLINE + 90)
    at = datetime.now(UTC)
    try:
        async with another_instance(stack, "keys", tmp_path / "keys-b.log") as (b_url, b):
            async with account.client(b_url) as on_b:
                assert (await _verdict(on_b, crossed["key"]))["code"] == "valid"
            await publish(producer, _records(crossed, 60, at) + _records(under, 400, at))
            for name in ("usage", "keys"):
                SERVICE[name].process.kill()
            b.kill()  # the second keys process too
        await publish(producer, _records(crossed, 90, at) + _records(under, 400, at))
    finally:
        for name in ("usage", "keys"):
            await restart_service(stack, name)

    async with (
        another_keys_instance(stack, tmp_path / "keys-c.log") as c_url,
        account.client(c_url) as on_c,
    ):
        await _wait_code([api, on_c], crossed["key"], "rate_limited")

        # The key under its limit: valid everywhere once its 800 requests are counted (each
        # answer below is an admission too, so the polls are few: 1,000 leaves room).
        async def counted_and_valid() -> bool:
            answers = [await _verdict(client, under["key"]) for client in (api, on_c)]
            assert all(a["code"] == "valid" for a in answers), answers
            return all(a["limits"]["rate_limit_per_hour"]["remaining"] <= 200 for a in answers)

        await wait_until(
            counted_and_valid, timeout=STATE_DEADLINE, interval=0.5, what="800 counted, valid"
        )
