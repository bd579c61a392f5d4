"""Creating and rotating a key once per request: the `Idempotency-Key` header makes a
retry after a lost answer safe. The repeat is refused (409 already_done) naming the key,
since the secret is handed out in the first answer only."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from contracts import CommandResult, KeyAttributes
from services.keys.app import use_cases
from tests.support.accounts import Account, new_account
from tests.support.stack import Stack
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack

Json = dict[str, Any]


async def names(api: httpx.AsyncClient) -> list[str]:
    """Names of the account's keys but the admin key the test calls with."""
    me = (await api.get("/v1/whoami")).json()["key_id"]
    listed = await api.get("/v1/keys", params={"limit": 200})
    assert listed.status_code == 200, listed.text
    return [k["name"] for k in listed.json()["items"] if k["id"] != me]


def once(token: str) -> dict[str, str]:
    return {"Idempotency-Key": token}


async def test_a_create_sent_again_with_its_idempotency_key_makes_one_key(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    token = str(uuid.uuid4())
    first = await api.post("/v1/keys", json={"name": "nightly batch"}, headers=once(token))
    assert first.status_code == 201, first.text
    made: Json = first.json()

    again = await api.post("/v1/keys", json={"name": "nightly batch"}, headers=once(token))
    assert again.status_code == 409, again.text
    error = again.json()["error"]
    assert error["code"] == "already_done"
    assert (error["key_id"], error["prefix"]) == (made["id"], made["prefix"])
    assert made["id"] in error["message"] and made["prefix"] in error["message"]
    assert made["key"] not in again.text, "the secret is handed out once"
    assert await names(api) == ["nightly batch"]

    # Without the header every request is a new key, as before.
    for _ in range(2):
        plain = await api.post("/v1/keys", json={"name": "no header"})
        assert plain.status_code == 201, plain.text
    assert sorted(await names(api)) == ["nightly batch", "no header", "no header"]

    # The token is the caller's own: another account using the same one makes its key.
    other = await new_account(stack, prefix="idempotency-b")
    async with other.client() as as_b:
        theirs = await as_b.post("/v1/keys", json={"name": "b's batch"}, headers=once(token))
        assert theirs.status_code == 201, theirs.text


async def test_concurrent_creates_with_one_idempotency_key_make_one_key(
    api: httpx.AsyncClient,
) -> None:
    token = str(uuid.uuid4())
    answers = await asyncio.gather(
        *(api.post("/v1/keys", json={"name": "raced"}, headers=once(token)) for _ in range(8))
    )
    assert sorted(a.status_code for a in answers) == [201] + [409] * 7, [a.text for a in answers]
    assert await names(api) == ["raced"]


async def test_an_idempotency_key_sent_with_another_request_is_refused(
    api: httpx.AsyncClient,
) -> None:
    token = str(uuid.uuid4())
    first = await api.post("/v1/keys", json={"name": "first"}, headers=once(token))
    assert first.status_code == 201, first.text
    other = await api.post("/v1/keys", json={"name": "second"}, headers=once(token))
    assert other.status_code == 422, other.text
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert await names(api) == ["first"]
    twice = await api.post(
        "/v1/keys",
        json={"name": "third"},
        headers=[("Idempotency-Key", str(uuid.uuid4())), ("Idempotency-Key", token)],
    )
    assert twice.status_code == 400 and "one Idempotency-Key" in twice.text
    assert await names(api) == ["first"]


async def test_a_twin_that_commits_first_makes_the_other_answer_already_done(
    stack: Stack, api: httpx.AsyncClient, account: Account, db: dict[str, asyncpg.Connection]
) -> None:
    """The race, made certain: the twin's row is written and held uncommitted while the
    request runs, so the request finds nothing, makes its key, then waits on that row;
    once the twin commits, the request's transaction is rolled back and retried, and the
    retry answers 409 naming the twin's key. No second key is left behind."""
    token, body = str(uuid.uuid4()), {"name": "raced"}
    request = use_cases.Once(
        "CreateKey", "create", token, KeyAttributes.model_validate(body).model_dump_json()
    )
    request_id, twins_key = request.request_id(account.id), uuid.uuid4()
    result = CommandResult(
        command_id=request_id, status="accepted", key_id=twins_key, prefix="ig_live_Tw1n"
    )
    holder, watcher = db["keys"], await asyncpg.connect(stack.database("keys"))
    try:
        held = holder.transaction()
        await held.start()
        await holder.execute(
            "INSERT INTO processed_commands"
            " (command_id, account_id, command_type, result, request_digest)"
            " VALUES ($1, $2, 'CreateKey', $3::jsonb, $4)",
            request_id, account.id, result.model_dump_json(), request.digest,
        )  # fmt: skip
        sent = asyncio.create_task(api.post("/v1/keys", json=body, headers=once(token)))

        async def waiting_on_the_twin() -> bool:
            return bool(
                await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    # The insert is a part of the append's one statement (issue 14).
                    " AND query LIKE '%INSERT INTO processed_commands%'"
                )
            )

        await wait_until(waiting_on_the_twin, timeout=60, what="the request to wait on the twin")
        await held.commit()
        answer = await sent
    finally:
        await watcher.close()
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["key_id"] == str(twins_key)
    assert await names(api) == [], "the request's own key was rolled back"


async def test_a_refused_create_does_not_use_up_its_idempotency_key(
    api: httpx.AsyncClient,
) -> None:
    token = str(uuid.uuid4())
    past = await api.post(
        "/v1/keys",
        json={"name": "late", "expires_at": "2001-01-01T00:00:00Z"},
        headers=once(token),
    )
    assert past.status_code == 422, past.text
    fixed = await api.post("/v1/keys", json={"name": "late"}, headers=once(token))
    assert fixed.status_code == 201, fixed.text


async def test_a_rotation_sent_again_rotates_once(api: httpx.AsyncClient) -> None:
    made = (await api.post("/v1/keys", json={"name": "rotated once"})).json()
    other = (await api.post("/v1/keys", json={"name": "rotated too"})).json()
    token = str(uuid.uuid4())
    rotate = f"/v1/keys/{made['id']}/rotate"

    first = await api.post(rotate, json={"grace_period_seconds": 0}, headers=once(token))
    assert first.status_code == 200, first.text
    again = await api.post(rotate, json={"grace_period_seconds": 0}, headers=once(token))
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_done"
    assert first.json()["prefix"] in again.json()["error"]["message"]

    now = (await api.get(f"/v1/keys/{made['id']}")).json()
    assert now["version"] == made["version"] + 1, "rotated once"
    verdict = (await api.post("/v1/verify", json={"key": first.json()["key"]})).json()
    assert verdict["valid"] is True, "the first rotation's secret is the key's secret"

    # The same token rotating another key is another request.
    elsewhere = await api.post(f"/v1/keys/{other['id']}/rotate", json={}, headers=once(token))
    assert elsewhere.status_code == 200, elsewhere.text


@pytest.mark.parametrize(
    "token", [b"has space", b"x" * 256, b"caf\xe9", b""], ids=["space", "long", "latin1", "empty"]
)
async def test_a_malformed_idempotency_key_is_refused_and_nothing_is_made(
    api: httpx.AsyncClient, token: bytes
) -> None:
    answer = await api.post("/v1/keys", json={"name": "never"}, headers={b"Idempotency-Key": token})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "idempotency_key_invalid", error
    assert [d["field"] for d in error["details"]] == ["Idempotency-Key"]
    assert await names(api) == []
