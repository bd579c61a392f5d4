"""The key service over HTTP, as a person and an API gateway use it: the whole life of a
key, its history and past states, bad input, authentication and verification."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from contracts import ALL_PLATFORM_SCOPES, USAGE_RECORDS
from contracts.base import format_utc
from services.keys.domain.secret import BASE62_ALPHABET, SECRET_PATTERN, generate_secret
from tests.support.accounts import Account, keys_cli
from tests.support.kafka import TopicTail
from tests.support.stack import Stack
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack

Json = dict[str, Any]


# --- small helpers, each one request or one fact ----------------------------------------
async def create_key(api: httpx.AsyncClient, **attributes: Any) -> Json:
    attributes.setdefault("name", f"key {uuid.uuid4().hex[:8]}")
    response = await api.post("/v1/keys", json=attributes)
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


async def act(api: httpx.AsyncClient, key_id: str, action: str, **body: Any) -> Json:
    """POST /v1/keys/{id}/<action> (disable, enable, rotate, reveal), expecting success."""
    response = await api.post(f"/v1/keys/{key_id}/{action}", json=body or None)
    assert response.status_code == 200, response.text
    answer: Json = response.json()
    return answer


async def verify(api: httpx.AsyncClient, secret: str) -> Json:
    response = await api.post("/v1/verify", json={"key": secret})
    assert response.status_code == 200, response.text
    verdict: Json = response.json()
    return verdict


async def whoami(client: httpx.AsyncClient) -> Json:
    response = await client.get("/v1/whoami")
    assert response.status_code == 200, response.text
    me: Json = response.json()
    return me


async def walk(api: httpx.AsyncClient, path: str, limit: int) -> list[Json]:
    """Every item of a list endpoint, following next_cursor page by page."""
    items: list[Json] = []
    params: dict[str, Any] = {"limit": limit}
    for _ in range(1000):
        response = await api.get(path, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        if page["next_cursor"] is None:
            return items
        params["cursor"] = page["next_cursor"]
    raise AssertionError(f"{path} never stopped paging")


def error_code(response: httpx.Response) -> str:
    """The error body of INTERFACE.md: {"error": {"code", "message"}}."""
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    code: str = error["code"]
    return code


def with_one_character_changed(secret: str) -> str:
    """The same secret with one character of its random part swapped: a look-alike."""
    at = len(secret) - 10
    swapped = BASE62_ALPHABET[(BASE62_ALPHABET.index(secret[at]) + 1) % len(BASE62_ALPHABET)]
    return secret[:at] + swapped + secret[at + 1 :]


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the whole life of a key ---------------------------------------------------------------
async def test_a_key_lives_its_whole_life_over_http(api: httpx.AsyncClient) -> None:
    admin = await whoami(api)
    key = await create_key(api, name="Checkout service", description="Web shop")
    key_id, first_secret = key["id"], key["key"]
    assert re.fullmatch(r"ig_live_[0-9A-Za-z]{4}", key["prefix"])
    assert first_secret.startswith(key["prefix"])
    assert (key["status"], key["version"]) == ("active", 1)
    assert (await verify(api, first_secret))["code"] == "valid"

    # Viewing it shows everything but the secret, with its version as the ETag.
    shown = await api.get(f"/v1/keys/{key_id}")
    assert shown.status_code == 200
    assert shown.headers["ETag"] == '"v1"'
    assert "key" not in shown.json() and first_secret not in shown.text
    assert shown.json()["name"] == "Checkout service"
    listed = await api.get("/v1/keys")
    assert listed.json()["items"][0]["id"] == key_id

    # Renamed and described, with the version it was read at.
    renamed = await api.patch(
        f"/v1/keys/{key_id}",
        json={"name": "Checkout (EU)", "description": "Web shop, EU region"},
        headers={"If-Match": '"v1"'},
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["version"] == 2

    # A second writer still holding version 1 is told so, and changes nothing.
    stale = await api.patch(
        f"/v1/keys/{key_id}", json={"name": "Lost update"}, headers={"If-Match": '"v1"'}
    )
    assert stale.status_code == 409
    assert error_code(stale) == "version_conflict"
    current = await api.get(f"/v1/keys/{key_id}")
    assert current.json()["name"] == "Checkout (EU)"
    assert current.headers["ETag"] == '"v2"'

    assert (await act(api, key_id, "disable"))["status"] == "disabled"
    disabled = await verify(api, first_secret)
    assert (disabled["valid"], disabled["code"]) == (False, "disabled")
    assert (await act(api, key_id, "enable"))["status"] == "active"
    assert (await verify(api, first_secret))["code"] == "valid"

    # Rotation: a new secret at once, the old one until the grace period ends.
    rotated = await act(api, key_id, "rotate", grace_period_seconds=5)
    second_secret = rotated["key"]
    assert second_secret != first_secret and second_secret.startswith(rotated["prefix"])
    grace_ends = moment(rotated["grace_period_ends_at"])
    assert (await verify(api, second_secret))["code"] == "valid"
    assert (await verify(api, first_secret))["code"] == "valid"

    async def old_secret_refused() -> Json:
        verdict = await verify(api, first_secret)
        return {} if verdict["valid"] else verdict

    refused = await wait_until(old_secret_refused, timeout=60, what="the old secret refused")
    assert datetime.now(UTC) >= grace_ends, "the old secret was refused before its grace ended"
    assert refused["code"] == "revoked"
    assert (await verify(api, second_secret))["code"] == "valid"

    assert (await act(api, key_id, "reveal"))["key"] == second_secret

    revoked = await api.delete(f"/v1/keys/{key_id}")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    assert (await verify(api, second_secret))["code"] == "revoked"
    reveal_after = await api.post(f"/v1/keys/{key_id}/reveal")
    assert reveal_after.status_code == 409
    assert error_code(reveal_after) == "key_revoked"

    # The history: every change, newest first, by the admin key, never with a secret.
    history = await walk(api, f"/v1/keys/{key_id}/events", limit=50)
    assert [e["event_type"] for e in history] == [
        "KeyRevoked",
        "KeyRevealed",
        "KeyRotated",
        "KeyEnabled",
        "KeyDisabled",
        "KeyUpdated",
        "KeyCreated",
    ]
    assert [e["stream_version"] for e in history] == [7, 6, 5, 4, 3, 2, 1]
    assert {(e["actor"]["type"], e["actor"]["id"]) for e in history} == {("user", admin["key_id"])}
    updated = next(e for e in history if e["event_type"] == "KeyUpdated")
    assert updated["data"] == {
        "before": {"name": "Checkout service", "description": "Web shop"},
        "after": {"name": "Checkout (EU)", "description": "Web shop, EU region"},
    }
    history_text = orjson.dumps(history).decode()
    assert first_secret not in history_text and second_secret not in history_text

    paged = await walk(api, f"/v1/keys/{key_id}/events", limit=2)
    assert [e["event_id"] for e in paged] == [e["event_id"] for e in history]


async def test_the_key_list_is_newest_first_and_pages_through_every_key_once(
    api: httpx.AsyncClient,
) -> None:
    created = [(await create_key(api, name=f"Worker {n}"))["id"] for n in range(3)]

    whole = await api.get("/v1/keys")
    assert whole.status_code == 200
    assert set(whole.json()) == {"items", "next_cursor"}
    assert whole.json()["next_cursor"] is None
    items = whole.json()["items"]
    assert len(items) == 4  # the three, and the account's admin key, created first
    assert [i["id"] for i in items[:3]] == list(reversed(created))
    created_times = [moment(i["created_at"]) for i in items]
    assert created_times == sorted(created_times, reverse=True)
    assert all("key" not in item for item in items)

    one_by_one = await walk(api, "/v1/keys", limit=1)
    assert [i["id"] for i in one_by_one] == [i["id"] for i in items]


async def test_as_of_shows_the_key_as_it_was_at_that_time(api: httpx.AsyncClient) -> None:
    before_creation = datetime.now(UTC)
    key = await create_key(api, name="Reporting")
    after_creation = datetime.now(UTC)
    assert (await api.patch(f"/v1/keys/{key['id']}", json={"name": "BI export"})).is_success
    after_rename = datetime.now(UTC)
    await act(api, key["id"], "disable")

    async def state_at(when: datetime) -> httpx.Response:
        return await api.get(f"/v1/keys/{key['id']}", params={"as_of": format_utc(when)})

    then = await state_at(after_creation)
    assert then.status_code == 200, then.text
    assert (then.json()["name"], then.json()["status"], then.json()["version"]) == (
        "Reporting",
        "active",
        1,
    )
    later = (await state_at(after_rename)).json()
    assert (later["name"], later["status"]) == ("BI export", "active")
    now = (await state_at(datetime.now(UTC))).json()
    assert (now["name"], now["status"]) == ("BI export", "disabled")

    not_yet = await state_at(before_creation)
    assert not_yet.status_code == 404
    assert error_code(not_yet) == "not_found"


async def test_a_key_is_refused_from_its_expiry_and_the_scheduler_records_it(
    api: httpx.AsyncClient,
) -> None:
    # Margins of seconds, not one: a loaded 2-core machine can take that long to answer.
    expires_at = datetime.now(UTC) + timedelta(seconds=5)
    key = await create_key(api, name="Trial", expires_at=format_utc(expires_at))
    assert (await verify(api, key["key"]))["code"] == "valid"

    async def refused() -> Json:
        verdict = await verify(api, key["key"])
        return {} if verdict["valid"] else verdict

    verdict = await wait_until(refused, timeout=60, what="the expired key refused")
    assert datetime.now(UTC) >= expires_at, "refused before its expiry"
    assert verdict["code"] == "expired"
    assert verdict["key_id"] == key["id"]

    async def expiry_recorded() -> Json:
        history = await walk(api, f"/v1/keys/{key['id']}/events", limit=50)
        return next((e for e in history if e["event_type"] == "KeyExpired"), {})

    expired = await wait_until(expiry_recorded, timeout=60, what="a KeyExpired event")
    assert expired["actor"]["type"] == "system"
    assert expired["actor"]["id"] == "keys-expiry-scheduler"
    assert (await api.get(f"/v1/keys/{key['id']}")).json()["status"] == "expired"


async def test_as_of_before_an_expiry_shows_the_key_active_even_once_it_has_expired(
    api: httpx.AsyncClient,
) -> None:
    expires_at = datetime.now(UTC) + timedelta(seconds=5)
    key = await create_key(api, name="Short-lived", expires_at=format_utc(expires_at))
    while_active = datetime.now(UTC)
    assert while_active < expires_at

    async def expired() -> bool:
        shown = await api.get(f"/v1/keys/{key['id']}")
        return bool(shown.json()["status"] == "expired")

    await wait_until(expired, timeout=60, what="the key shown as expired")
    then = await api.get(f"/v1/keys/{key['id']}", params={"as_of": format_utc(while_active)})
    assert then.status_code == 200, then.text
    assert (then.json()["version"], then.json()["status"]) == (1, "active")


# --- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("attributes", "code"),
    [
        pytest.param({}, "name_invalid", id="missing name"),
        pytest.param({"name": "   "}, "name_invalid", id="name of only spaces"),
        pytest.param({"name": "n" * 101}, "name_invalid", id="name of 101 characters"),
        pytest.param({"name": "Fine", "colour": "red"}, None, id="unknown field"),
        pytest.param(
            {"name": "Fine", "expires_at": "2020-01-01T00:00:00Z"},
            "expires_at_in_past",
            id="expiry in the past",
        ),
    ],
)
async def test_a_new_key_with_invalid_attributes_is_refused_and_not_created(
    api: httpx.AsyncClient, attributes: Json, code: str | None
) -> None:
    keys_before = len(await walk(api, "/v1/keys", limit=200))
    response = await api.post("/v1/keys", json=attributes)
    assert response.status_code == 422, response.text
    if code is not None:
        assert error_code(response) == code
    assert len(await walk(api, "/v1/keys", limit=200)) == keys_before


async def test_a_name_of_exactly_100_characters_is_accepted(api: httpx.AsyncClient) -> None:
    assert (await create_key(api, name="n" * 100))["name"] == "n" * 100


async def test_an_update_that_changes_nothing_or_sets_a_past_expiry_is_refused(
    api: httpx.AsyncClient,
) -> None:
    key = await create_key(api)
    empty = await api.patch(f"/v1/keys/{key['id']}", json={})
    assert empty.status_code == 422
    error_code(empty)
    past = await api.patch(
        f"/v1/keys/{key['id']}", json={"expires_at": format_utc(datetime.now(UTC) - timedelta(1))}
    )
    assert past.status_code == 422
    assert error_code(past) == "expires_at_in_past"
    assert (await api.get(f"/v1/keys/{key['id']}")).json()["version"] == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("POST", "/v1/keys", id="create"),
        pytest.param("PATCH", "/v1/keys/{id}", id="update"),
        pytest.param("POST", "/v1/keys/{id}/disable", id="disable"),
        pytest.param("POST", "/v1/keys/{id}/rotate", id="rotate"),
        pytest.param("POST", "/v1/verify", id="verify"),
    ],
)
async def test_a_body_that_is_not_json_gets_a_client_error_never_a_500(
    api: httpx.AsyncClient, method: str, path: str
) -> None:
    key = await create_key(api)
    response = await api.request(
        method,
        path.format(id=key["id"]),
        content=b"{this is not json",
        headers={"Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500, response.text
    error_code(response)


async def test_disabling_twice_or_enabling_an_active_key_is_a_conflict(
    api: httpx.AsyncClient,
) -> None:
    key = await create_key(api)
    enable_active = await api.post(f"/v1/keys/{key['id']}/enable")
    assert enable_active.status_code == 409
    assert error_code(enable_active) == "key_already_active"
    await act(api, key["id"], "disable")
    disable_again = await api.post(f"/v1/keys/{key['id']}/disable")
    assert disable_again.status_code == 409
    assert error_code(disable_again) == "key_already_disabled"
    assert (await api.get(f"/v1/keys/{key['id']}")).json()["version"] == 2


async def test_a_revoked_key_refuses_every_change(api: httpx.AsyncClient) -> None:
    key = await create_key(api)
    assert (await api.delete(f"/v1/keys/{key['id']}")).status_code == 200
    base = f"/v1/keys/{key['id']}"
    attempts = {
        "update": await api.patch(base, json={"name": "Back from the dead"}),
        "disable": await api.post(f"{base}/disable"),
        "enable": await api.post(f"{base}/enable"),
        "rotate": await api.post(f"{base}/rotate"),
        "reveal": await api.post(f"{base}/reveal"),
        "revoke again": await api.delete(base),
    }
    answers = {name: (r.status_code, error_code(r)) for name, r in attempts.items()}
    assert answers == dict.fromkeys(attempts, (409, "key_revoked"))
    shown = (await api.get(base)).json()
    assert (shown["status"], shown["version"]) == ("revoked", 2)


def every_key_endpoint(key_id: str) -> list[tuple[str, str, Json | None]]:
    """(method, path, json body) of each endpoint that names a key."""
    base = f"/v1/keys/{key_id}"
    return [
        ("GET", base, None),
        ("PATCH", base, {"name": "Renamed"}),
        ("DELETE", base, None),
        ("POST", f"{base}/disable", None),
        ("POST", f"{base}/enable", None),
        ("POST", f"{base}/rotate", None),
        ("POST", f"{base}/reveal", None),
        ("GET", f"{base}/events", None),
    ]


async def test_an_unknown_key_id_is_not_found_on_every_endpoint(api: httpx.AsyncClient) -> None:
    for method, path, body in every_key_endpoint(str(uuid.uuid4())):
        response = await api.request(method, path, json=body)
        assert (response.status_code, error_code(response)) == (404, "not_found"), (method, path)


async def test_a_malformed_key_id_in_the_path_is_a_422(api: httpx.AsyncClient) -> None:
    for method, path, body in every_key_endpoint("not-a-uuid"):
        response = await api.request(method, path, json=body)
        assert response.status_code == 422, (method, path, response.text)
        error_code(response)


async def test_a_cursor_the_api_did_not_issue_is_a_400(api: httpx.AsyncClient) -> None:
    key = await create_key(api)
    for path in ("/v1/keys", f"/v1/keys/{key['id']}/events"):
        response = await api.get(path, params={"cursor": "not-a-cursor"})
        assert response.status_code == 400, (path, response.text)
        assert error_code(response) == "bad_cursor"


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param("99999999999", id="version beyond 32 bits"),
        pytest.param("\N{SUPERSCRIPT TWO}", id="a digit int() cannot read"),
    ],
)
async def test_a_forged_history_cursor_is_a_400_never_a_500(
    api: httpx.AsyncClient, forged: str
) -> None:
    key = await create_key(api)
    response = await api.get(f"/v1/keys/{key['id']}/events", params={"cursor": cursor_of(forged)})
    assert response.status_code == 400, response.text
    assert error_code(response) == "bad_cursor"


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param("0001-01-01T00:00:00+01:00|" + str(uuid.UUID(int=1)), id="year 1 east of UTC"),
        pytest.param("2026-11-26T18:00:00|" + str(uuid.UUID(int=1)), id="no time zone"),
    ],
)
async def test_a_forged_list_cursor_is_a_400_never_a_500(
    api: httpx.AsyncClient, forged: str
) -> None:
    response = await api.get("/v1/keys", params={"cursor": cursor_of(forged)})
    assert response.status_code == 400, response.text
    assert error_code(response) == "bad_cursor"


@pytest.mark.parametrize("limit", [0, 1000])
async def test_a_page_size_out_of_range_is_a_422(api: httpx.AsyncClient, limit: int) -> None:
    key = await create_key(api)
    for path in ("/v1/keys", f"/v1/keys/{key['id']}/events"):
        response = await api.get(path, params={"limit": limit})
        assert response.status_code == 422, (path, response.text)
        error_code(response)


# --- who may call ----------------------------------------------------------------------------
async def test_a_request_without_a_valid_key_is_challenged(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url("keys")) as anonymous:
        for headers in ({}, {"Authorization": "Bearer garbage"}, {"Authorization": "Basic eA=="}):
            response = await anonymous.get("/v1/keys", headers=headers)
            assert response.status_code == 401, (headers, response.text)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert error_code(response) == "unauthenticated"


async def test_a_verify_only_key_may_verify_but_not_manage_keys(
    api: httpx.AsyncClient, account: Account
) -> None:
    gateway = await create_key(api, name="Gateway", scopes=["keys:verify"])
    other = await create_key(api, name="Customer key")
    async with httpx.AsyncClient(
        base_url=account.keys_url, headers={"Authorization": f"Bearer {gateway['key']}"}
    ) as as_gateway:
        for method, path, body in [
            ("GET", "/v1/keys", None),
            ("POST", "/v1/keys", {"name": "Escalation"}),
            ("GET", f"/v1/keys/{other['id']}", None),
            ("POST", f"/v1/keys/{other['id']}/reveal", None),
        ]:
            response = await as_gateway.request(method, path, json=body)
            assert response.status_code == 403, (method, path, response.text)
            assert error_code(response) == "insufficient_scope"
        assert (await verify(as_gateway, other["key"]))["key_id"] == other["id"]
        me = await whoami(as_gateway)
    assert me == {
        "key_id": gateway["id"],
        "account_id": account.id,
        "environment": "production",
        "scopes": ["keys:verify"],
    }


async def test_a_disabled_admin_key_is_no_longer_accepted(
    api: httpx.AsyncClient, account: Account
) -> None:
    deputy = await create_key(api, name="Deputy admin", scopes=list(ALL_PLATFORM_SCOPES))
    async with httpx.AsyncClient(
        base_url=account.keys_url, headers={"Authorization": f"Bearer {deputy['key']}"}
    ) as as_deputy:
        assert (await as_deputy.get("/v1/keys")).status_code == 200
        await act(api, deputy["id"], "disable")
        for path in ("/v1/keys", "/v1/whoami"):
            response = await as_deputy.get(path)
            assert response.status_code == 401, (path, response.text)
            assert error_code(response) == "unauthenticated"


async def test_whoami_describes_the_bearer_key(api: httpx.AsyncClient, account: Account) -> None:
    (admin_key,) = await walk(api, "/v1/keys", limit=50)  # a fresh account has only its admin
    me = await whoami(api)
    assert me["key_id"] == admin_key["id"]
    assert (me["account_id"], me["environment"]) == (account.id, "production")
    assert sorted(me["scopes"]) == sorted(ALL_PLATFORM_SCOPES)


# --- verification ----------------------------------------------------------------------------
async def test_verify_says_why_a_key_is_refused(api: httpx.AsyncClient) -> None:
    expiring = await create_key(
        api, name="Expiring", expires_at=format_utc(datetime.now(UTC) + timedelta(seconds=5))
    )
    disabled = await create_key(api, name="Disabled")
    await act(api, disabled["id"], "disable")
    revoked = await create_key(api, name="Revoked")
    assert (await api.delete(f"/v1/keys/{revoked['id']}")).status_code == 200

    look_alike = with_one_character_changed(disabled["key"])
    assert SECRET_PATTERN.fullmatch(look_alike), "the look-alike keeps the shape of a key"
    assert await verify(api, look_alike) == {"valid": False, "code": "malformed"}
    unknown = generate_secret("production").plaintext
    assert await verify(api, unknown) == {"valid": False, "code": "not_found"}

    for key, code in [(disabled, "disabled"), (revoked, "revoked")]:
        verdict = await verify(api, key["key"])
        assert (verdict["valid"], verdict["code"], verdict["key_id"]) == (False, code, key["id"])

    async def expired() -> Json:
        verdict = await verify(api, expiring["key"])
        return verdict if verdict["code"] == "expired" else {}

    verdict = await wait_until(expired, timeout=60, what="the expiring key refused as expired")
    assert (verdict["valid"], verdict["key_id"]) == (False, expiring["id"])


async def test_a_disabled_key_still_being_tried_shows_up_in_usage_records(
    api: httpx.AsyncClient, account: Account, stack: Stack
) -> None:
    key = await create_key(api, name="Leaked")
    await act(api, key["id"], "disable")
    async with TopicTail(stack.kafka, USAGE_RECORDS) as tail:
        assert (await verify(api, key["key"]))["code"] == "disabled"

        def refusal_seen(records: list[Any]) -> bool:
            return any(orjson.loads(r.value)["key_id"] == key["id"] for r in records)

        records = await tail.collect(until=refusal_seen)
    (record,) = [r for r in records if orjson.loads(r.value)["key_id"] == key["id"]]
    usage = orjson.loads(record.value)
    assert (usage["status_code"], usage["account_id"]) == (401, account.id)
    assert record.key == key["id"].encode()
    assert key["key"].encode() not in record.value


# --- the event store and its read models -------------------------------------------------------
@dataclass(frozen=True)
class ReadModels:
    """One snapshot of the keys database: each stream's version and both read models."""

    streams: dict[uuid.UUID, int]
    state: dict[uuid.UUID, tuple[Any, ...]]
    lookup: dict[bytes, tuple[Any, ...]]

    @classmethod
    async def read(cls, conn: asyncpg.Connection) -> ReadModels:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            streams = await conn.fetch(
                "SELECT key_id, max(stream_version) AS version FROM events GROUP BY key_id"
            )
            state = await conn.fetch("SELECT * FROM key_state")
            lookup = await conn.fetch("SELECT * FROM key_lookup")
        return cls(
            {r["key_id"]: r["version"] for r in streams},
            {r["key_id"]: tuple(r) for r in state},
            {r["secret_hash"]: tuple(r) for r in lookup},
        )

    def unmoved_since(self, earlier: ReadModels) -> set[uuid.UUID]:
        return {k for k, v in earlier.streams.items() if self.streams.get(k) == v}

    def state_of(self, key_ids: set[uuid.UUID]) -> dict[uuid.UUID, tuple[Any, ...]]:
        return {k: row for k, row in self.state.items() if k in key_ids}

    def lookup_of(self, key_ids: set[uuid.UUID]) -> dict[bytes, tuple[Any, ...]]:
        return {h: row for h, row in self.lookup.items() if row[1] in key_ids}


async def test_rebuilding_the_read_models_from_events_gives_the_same_tables(
    api: httpx.AsyncClient, stack: Stack, db: dict[str, asyncpg.Connection]
) -> None:
    key = await create_key(api, name="Rebuilt", description="before")
    assert (await api.patch(f"/v1/keys/{key['id']}", json={"description": "after"})).is_success
    await act(api, key["id"], "rotate", grace_period_seconds=60)
    await act(api, key["id"], "disable")
    before = await ReadModels.read(db["keys"])

    await asyncio.to_thread(keys_cli, stack, "rebuild-projections")

    after = await ReadModels.read(db["keys"])
    # Other scenarios may append meanwhile: compare every key whose stream did not move
    # (when nothing moved, that is both tables whole).
    unmoved = after.unmoved_since(before)
    mine = uuid.UUID(key["id"])
    assert mine in unmoved
    assert len(unmoved) >= len(before.streams) // 2, "too much moved to compare meaningfully"
    assert after.state_of(unmoved) == before.state_of(unmoved)
    assert after.lookup_of(unmoved) == before.lookup_of(unmoved)
    assert len(after.lookup_of({mine})) == 2  # the current secret and the one in its grace


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("UPDATE events SET data = '{}'::jsonb WHERE key_id = $1", id="update data"),
        pytest.param(
            "UPDATE events SET position = position + 1000000 WHERE key_id = $1",
            id="move a published position",
        ),
        pytest.param("DELETE FROM events WHERE key_id = $1", id="delete"),
    ],
)
async def test_the_event_store_refuses_to_change_or_forget_an_event(
    api: httpx.AsyncClient, db: dict[str, asyncpg.Connection], statement: str
) -> None:
    key = await create_key(api)
    await act(api, key["id"], "disable")
    conn = db["keys"]
    key_id = uuid.UUID(key["id"])

    async def positioned() -> bool:
        count = await conn.fetchval(
            "SELECT count(*) FROM events WHERE key_id = $1 AND position IS NOT NULL", key_id
        )
        return bool(count == 2)

    await wait_until(positioned, what="both events sequenced")
    before = [tuple(r) for r in await conn.fetch("SELECT * FROM events WHERE key_id = $1", key_id)]

    # Inside a transaction that is rolled back, so even a store that allowed it loses nothing.
    transaction = conn.transaction()
    await transaction.start()
    try:
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute(statement, key_id)
    finally:
        await transaction.rollback()

    after = [tuple(r) for r in await conn.fetch("SELECT * FROM events WHERE key_id = $1", key_id)]
    assert after == before


@pytest.mark.parametrize("reason", ["", "\x00", "x" * 501])
async def test_a_revoke_reason_that_breaks_the_rules_is_a_422_not_a_500(
    api: httpx.AsyncClient, reason: str
) -> None:
    key = await create_key(api)
    response = await api.delete(f"/v1/keys/{key['id']}", params={"reason": reason})
    assert response.status_code == 422, response.text
    assert error_code(response) == "reason_invalid"
    assert (await api.get(f"/v1/keys/{key['id']}")).json()["status"] == "active"
