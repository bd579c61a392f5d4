"""Accounts are isolated: a key only ever sees its own account's keys. Another account's
key id answers 404 on every endpoint, with nothing of that account in the body."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from contracts.base import format_utc
from tests.support.accounts import Account, operator_create_key, other_accounts_key
from tests.support.stack import Stack

pytestmark = pytest.mark.stack

Json = dict[str, Any]


def requests_naming(key_id: str) -> list[tuple[str, str, Json | None, Json | None]]:
    """(method, path, query, json body) for every keys endpoint that takes a key id."""
    base = f"/v1/keys/{key_id}"
    return [
        ("GET", base, None, None),
        ("GET", base, {"as_of": format_utc(datetime.now(UTC))}, None),
        ("PATCH", base, None, {"name": "Taken over"}),
        ("DELETE", base, None, None),
        ("POST", f"{base}/disable", None, {"reason": "Not yours"}),
        ("POST", f"{base}/enable", None, None),
        ("POST", f"{base}/rotate", None, {"grace_period_seconds": 0}),
        ("POST", f"{base}/reveal", None, None),
        ("GET", f"{base}/events", None, None),
    ]


async def test_another_accounts_key_is_not_found_on_every_endpoint(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    b, b_key = await other_accounts_key(stack)
    hidden = {"B's account id": b.id, "B's key name": b_key["name"], "B's prefix": b_key["prefix"]}

    for method, path, query, body in requests_naming(b_key["id"]):
        response = await api.request(method, path, params=query, json=body)
        assert response.status_code == 404, (method, path, query, response.text)
        assert response.json()["error"]["code"] == "not_found"
        leaked = [what for what, text in hidden.items() if text.encode() in response.content]
        assert leaked == [], (method, path, query, response.text)

    # ... and none of those attempts touched B's key.
    async with b.client() as as_b:
        untouched = (await as_b.get(f"/v1/keys/{b_key['id']}")).json()
        history = (await as_b.get(f"/v1/keys/{b_key['id']}/events")).json()["items"]
        verdict = (await as_b.post("/v1/verify", json={"key": b_key["key"]})).json()
    assert (untouched["name"], untouched["status"], untouched["version"]) == (
        b_key["name"],
        "active",
        1,
    )
    assert [e["event_type"] for e in history] == ["KeyCreated"]
    assert verdict["code"] == "valid"


async def test_an_accounts_key_list_never_shows_another_accounts_keys(
    stack: Stack, api: httpx.AsyncClient, account: Account
) -> None:
    b, b_key = await other_accounts_key(stack)
    listed = (await api.get("/v1/keys", params={"limit": 200})).json()
    assert listed["next_cursor"] is None
    assert {item["account_id"] for item in listed["items"]} == {account.id}
    assert b_key["id"] not in {item["id"] for item in listed["items"]}
    assert b.id.encode() not in (await api.get("/v1/keys")).content


async def test_a_key_verifies_only_its_own_accounts_keys(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    """A key only ever sees its own account's data: verifying another account's secret
    answers not_found and names nothing of that account."""
    b, b_key = await other_accounts_key(stack)
    answer = await api.post("/v1/verify", json={"key": b_key["key"]})
    assert answer.json() == {"valid": False, "code": "not_found"}
    assert b.id.encode() not in answer.content
    assert b_key["id"].encode() not in answer.content


async def test_a_platform_gateway_key_verifies_the_keys_of_every_account(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    """The platform's API gateways hold keys:verify:any-account and verify any customer's key."""
    b, b_key = await other_accounts_key(stack)
    gateway = await operator_create_key(
        stack, "platform", "Edge gateway", "keys:verify", "keys:verify:any-account"
    )
    async with httpx.AsyncClient(
        base_url=stack.url("keys"), headers={"Authorization": f"Bearer {gateway['key']}"}
    ) as as_gateway:
        verdict = (await as_gateway.post("/v1/verify", json={"key": b_key["key"]})).json()
    assert (verdict["valid"], verdict["code"]) == (True, "valid")
    assert (verdict["key_id"], verdict["account_id"]) == (b_key["id"], b.id)


async def test_an_account_admin_cannot_grant_what_it_does_not_hold(
    api: httpx.AsyncClient,
) -> None:
    """Only an operator makes platform gateway keys; an account's admin key, asking the API
    for a key (or a change) with keys:verify:any-account, is refused and nothing changes."""
    refused = await api.post(
        "/v1/keys", json={"name": "Sneaky", "scopes": ["keys:verify", "keys:verify:any-account"]}
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "insufficient_scope"
    assert "keys:verify:any-account" in refused.json()["error"]["message"]
    plain = await api.post("/v1/keys", json={"name": "Plain", "scopes": ["keys:verify"]})
    assert plain.status_code == 201
    widened = await api.patch(
        f"/v1/keys/{plain.json()['id']}", json={"scopes": ["keys:verify:any-account"]}
    )
    assert widened.status_code == 403
    names = [k["name"] for k in (await api.get("/v1/keys")).json()["items"]]
    assert "Sneaky" not in names
    assert (await api.get(f"/v1/keys/{plain.json()['id']}")).json()["scopes"] == ["keys:verify"]
