"""Who may read the audit log: a key of the account with the scope audit:read, and only
that account's records; a key that changes loses its cached access at once."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from services.audit.domain.entries import ACTIONS
from tests.support.accounts import Account, new_account
from tests.support.audit import audit_get
from tests.support.stack import Stack
from tests.support.wait import until_the_cache_expires, wait_until

pytestmark = pytest.mark.stack


async def _new_key(api: httpx.AsyncClient, name: str, scopes: list[str]) -> dict[str, Any]:
    created = await api.post("/v1/keys", json={"name": name, "scopes": scopes})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def _client(stack: Stack, secret: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.url("audit"), headers={"Authorization": f"Bearer {secret}"}, timeout=15
    )


async def _records_of_key(audit: httpx.AsyncClient, key_id: str) -> list[dict[str, Any]]:
    """The key's records; none while the log does not know the key (404)."""
    answer = await audit_get(audit, "/v1/audit/events", key_id=key_id)
    if answer.status_code == 404:
        return []
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def test_an_account_never_sees_another_accounts_records(
    stack: Stack, account: Account, api: httpx.AsyncClient
) -> None:
    key = await _new_key(api, "Only mine", ["keys:verify"])
    other = await new_account(stack, "other")
    async with (
        account.client(stack.url("audit")) as mine,
        other.client(stack.url("audit")) as theirs,
    ):

        async def recorded() -> list[dict[str, Any]]:
            return await _records_of_key(mine, key["id"])

        await wait_until(recorded, timeout=60, what="the key's creation in the owner's log")
        refused = await audit_get(theirs, "/v1/audit/events", key_id=key["id"])
        assert refused.status_code == 404, "another account's key id answers 404"
        assert refused.json()["error"]["code"] == "not_found"
        assert key["id"] not in refused.text and account.id not in refused.text

        async def their_own() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = (
                await audit_get(theirs, "/v1/audit/events", limit=200)
            ).json()["items"]
            return found

        everything = await wait_until(their_own, timeout=60, what="the other account's log")
        assert {i["account_id"] for i in everything} == {other.id}
        exported = (await audit_get(theirs, "/v1/audit/events", format="jsonl")).text
        assert key["id"] not in exported and account.id not in exported
        verified = (await audit_get(theirs, "/v1/audit/verify")).json()
        assert verified["account_id"] == other.id and verified["valid"] is True


async def test_reading_the_log_takes_a_valid_key_with_the_audit_read_scope(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    manager = await _new_key(api, "Manager only", ["keys:manage"])
    async with httpx.AsyncClient(base_url=stack.url("audit"), timeout=15) as anonymous:
        missing = await anonymous.get("/v1/audit/events")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "unauthenticated"
        assert missing.headers["www-authenticate"] == "Bearer"
        forged = await anonymous.get(
            "/v1/audit/verify", headers={"Authorization": "Bearer ig_live_notAKeyAtAll"}
        )
        assert forged.status_code == 401
    async with _client(stack, manager["key"]) as audit:
        refused = await audit_get(audit, "/v1/audit/events")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "insufficient_scope"
        assert (await audit_get(audit, "/v1/audit/verify")).status_code == 403


async def test_a_revoked_key_loses_its_cached_access_at_once(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    reader = await _new_key(api, "Auditor", ["audit:read"])
    async with _client(stack, reader["key"]) as audit:
        cached_since = time.monotonic()
        assert (await audit_get(audit, "/v1/audit/events")).status_code == 200  # now cached
        assert (await api.delete(f"/v1/keys/{reader['id']}")).status_code == 200

        async def refused() -> bool:
            return (await audit.get("/v1/audit/events")).status_code == 401

        # Before the cached answer may expire: only the change on keys.events does it.
        await wait_until(
            refused,
            timeout=until_the_cache_expires(cached_since),
            what="the revoked key to be refused",
        )


async def test_bad_filters_are_refused_with_a_reason(stack: Stack, account: Account) -> None:
    async with account.client(stack.url("audit")) as audit:
        for params, status, code in (
            ({"action": "key.exploded"}, 422, "action_invalid"),
            ({"cursor": "not-a-cursor"}, 400, "bad_cursor"),
            ({"cursor": ""}, 400, "bad_cursor"),
            ({"cursor": "MjAyNi0xMS0yNlQxODowMDowMHwx"}, 400, "bad_cursor"),  # the old form
            ({"limit": 0}, 422, "limit_invalid"),
            ({"format": "xml"}, 422, "format_invalid"),
            ({"since": "yesterday"}, 422, "since_invalid"),
            ({"since": "0.5"}, 422, "since_invalid"),  # a number is not a time
            ({"actor_id": "a\x00b"}, 422, "actor_id_invalid"),
        ):
            answer = await audit_get(audit, "/v1/audit/events", **params)
            assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), params


async def test_filters_narrow_the_log_by_action_actor_and_time(
    stack: Stack, account: Account, api: httpx.AsyncClient
) -> None:
    key = await _new_key(api, "Filtered", ["keys:verify"])
    assert (await api.post(f"/v1/keys/{key['id']}/disable", json={"reason": "test"})).is_success
    async with account.client(stack.url("audit")) as audit:

        async def both() -> list[dict[str, Any]]:
            items = await _records_of_key(audit, key["id"])
            return items if len(items) == 2 else []

        disabled, created = await wait_until(both, timeout=60, what="two records of the key")
        only = await audit_get(audit, "/v1/audit/events", action="key.disabled")
        assert [i["audit_id"] for i in only.json()["items"]] == [disabled["audit_id"]]
        actor = created["actor"]["id"]
        by_actor = (await audit_get(audit, "/v1/audit/events", actor_id=actor)).json()["items"]
        assert {i["actor"]["id"] for i in by_actor} == {actor} and len(by_actor) == 2
        window = await audit_get(
            audit,
            "/v1/audit/events",
            since=created["occurred_at"],
            until=disabled["occurred_at"],
        )
        assert [i["audit_id"] for i in window.json()["items"]] == [created["audit_id"]]


async def test_every_filter_its_document_allows_is_answered(stack: Stack, account: Account) -> None:
    """The document's shapes are the validation's: each action it lists, any cursor of its
    pattern (the extremes too), a limit above a page's 200, a time that is beyond the
    times there are once in UTC: each answers a page, none is refused."""
    async with account.client(stack.url("audit")) as audit:
        document = (await audit.get("/openapi.json")).json()
        operation = document["paths"]["/v1/audit/events"]["get"]
        schemas = {p["name"]: p["schema"] for p in operation["parameters"]}
        assert set(schemas["action"]["enum"]) == set(ACTIONS)
        cursors = ["0.0", "-999999999999999999.999999999999999999", "999999999999999999.1"]
        assert all(re.fullmatch(schemas["cursor"]["pattern"], c) for c in cursors)
        allowed: list[dict[str, Any]] = [
            *({"action": action} for action in ACTIONS),
            *({"cursor": cursor} for cursor in cursors),
            {"limit": 500},
            {"since": "0001-01-01T00:00:00+01:00", "until": "9999-12-31T23:59:59-23:59"},
        ]
        for params in allowed:
            answer = await audit_get(audit, "/v1/audit/events", **params)
            assert answer.status_code == 200, (params, answer.text)
            assert len(answer.json()["items"]) <= 200
