"""Leaked keys, end to end on the real broker and database: a key GitHub reports stops
working on every keys instance within seconds, a key anyone reports is taken out of use
without the reporter learning anything, and a canary key raises an alert per network."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from contracts import KEYS_EVENTS, parse_event
from devstack import paths
from services.keys.domain.secret import generate_secret
from tests.support.accounts import Account
from tests.support.audit import audit_get
from tests.support.github import Signer
from tests.support.kafka import Record, TopicTail
from tests.support.keys_processes import another_keys_instance
from tests.support.stack import Stack
from tests.support.usage import create_key, known_to_usage
from tests.support.wait import until_the_cache_expires, wait_until

pytestmark = pytest.mark.stack
GITHUB = Signer.new("instagen-test-github-key")
PER_MINUTE = 20
SETTINGS = {
    "KEYS_GITHUB_PUBLIC_KEYS": GITHUB.document(),
    "KEYS_PUBLIC_REPORTS_PER_MINUTE": str(PER_MINUTE),
}
LEAK_URL = "https://github.com/octo/app/blob/5f1e2d/.env"


@pytest.fixture(scope="module")
async def instances(stack: Stack) -> AsyncIterator[tuple[str, str]]:
    """Two keys processes of this module's own, trusting the test's GitHub key pair; their
    logs sit with the stack's, where the suite's final secrets scan reads them."""
    run = uuid.uuid4().hex[:6]
    async with (
        another_keys_instance(stack, paths.LOGS / f"leaks-a-{run}.log", **SETTINGS) as first,
        another_keys_instance(stack, paths.LOGS / f"leaks-b-{run}.log", **SETTINGS) as second,
    ):
        yield first, second


def github_body(*tokens: str) -> bytes:
    matches = [
        {"token": t, "type": "instagen_access_key", "url": LEAK_URL, "source": "content"}
        for t in tokens
    ]
    return json.dumps(matches).encode()


async def verdict(client: httpx.AsyncClient, secret: str, **context: str) -> dict[str, Any]:
    response = await client.post("/v1/verify", json={"key": secret, **context})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def secret_lookups(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    found = re.search(r"^instagen_secret_lookups_total (\S+)$", text, re.MULTILINE)
    assert found, "the keys service exports instagen_secret_lookups_total"
    return float(found.group(1))


def after_creation(records: list[Record], key_id: str) -> list[Any]:
    """The key's events but its KeyCreated (published when it may, maybe after the tail
    began)."""
    events = [parse_event(r.value or b"") for r in records if (r.key or b"").decode() == key_id]
    return [e for e in events if e.event_type != "KeyCreated"]


async def test_a_production_key_github_reports_is_quarantined_on_every_instance(
    stack: Stack, account: Account, api: httpx.AsyncClient, instances: tuple[str, str]
) -> None:
    key = await create_key(api, name="leaked in a commit", environment="production")
    secret = key["key"]
    first, second = (account.client(url) for url in instances)
    async with first, second, TopicTail(stack.kafka, KEYS_EVENTS) as events:
        cached_since = time.monotonic()
        for client in (first, second):  # now cached as valid on both
            assert (await verdict(client, secret))["code"] == "valid"

        body = github_body(secret, generate_secret("production").plaintext)
        response = await first.post(
            "/v1/secret-scanning/github", content=body, headers=GITHUB.headers(body)
        )
        assert response.status_code == 200, response.text
        assert response.json()[0] == {
            "token_hash": hashlib.sha256(secret.encode()).hexdigest(),
            "token_type": "instagen_access_key",
            "label": "true_positive",
        }
        assert response.json()[1]["label"] == "false_positive"
        assert set(response.json()[0]) == {"token_hash", "token_type", "label"}  # no owner

        for client in (first, second):

            async def refused(client: httpx.AsyncClient = client) -> bool:
                return bool((await verdict(client, secret))["code"] == "disabled")

            # Before the cached answer may expire: only the report's invalidation passes.
            await wait_until(
                refused,
                timeout=until_the_cache_expires(cached_since),
                interval=0.01,
                what="the key refused",
            )

        records = await events.collect(lambda rs: len(after_creation(rs, key["id"])) >= 2)
    reported, disabled = after_creation(records, key["id"])[:2]
    assert reported.event_type == "KeyReportedLeaked"
    assert reported.data.model_dump() == {
        "source": "github",
        "url": LEAK_URL,
        "action": "quarantined",
    }
    assert reported.actor.id == "github-secret-scanning"
    assert disabled.event_type == "KeyDisabled" and disabled.data.reason == "reported_leaked"
    assert secret not in b"".join(r.value or b"" for r in records).decode()

    # Reported again while quarantined: true positive, nothing more appended.
    again = await api.post(
        f"{instances[0]}/v1/secret-scanning/github",
        content=github_body(secret),
        headers=GITHUB.headers(github_body(secret)),
    )
    assert again.json()[0]["label"] == "true_positive"
    history = (await api.get(f"/v1/keys/{key['id']}/events")).json()["items"]
    assert [e["event_type"] for e in history][:2] == ["KeyDisabled", "KeyReportedLeaked"]
    assert len(history) == 3
    shown = (await api.get(f"/v1/keys/{key['id']}")).json()
    assert shown["status"] == "disabled" and shown["disabled_reason"] == "reported_leaked"
    assert shown["leak_report"]["source"] == "github" and shown["leak_report"]["url"] == LEAK_URL

    async with account.client(stack.url("usage")) as usage:

        async def alerted() -> list[Any]:
            page = await usage.get("/v1/alerts", params={"key_id": key["id"]})
            return [a for a in page.json()["items"] if a["kind"] == "key_reported_leaked"]

        alert = (await wait_until(alerted, timeout=60, what="a key_reported_leaked alert"))[0]
    assert alert["severity"] == "critical" and alert["evidence"]["source"] == "github"

    async with account.client(stack.url("audit")) as audit:

        async def recorded() -> list[Any]:
            page = await audit_get(
                audit, "/v1/audit/events", key_id=key["id"], action="key.reported_leaked"
            )
            items: list[Any] = page.json()["items"]
            return items

        entry = (await wait_until(recorded, timeout=60, what="the report's audit record"))[0]
    assert entry["actor"]["type"] == "service" and entry["actor"]["id"] == "github-secret-scanning"


async def test_a_report_signed_by_another_key_pair_is_refused_and_changes_nothing(
    account: Account, api: httpx.AsyncClient, instances: tuple[str, str]
) -> None:
    key = await create_key(api, name="not really reported", environment="staging")
    body = github_body(key["key"])
    forged = Signer.new(GITHUB.identifier).headers(body)
    async with account.client(instances[0]) as client:
        for headers in (forged, {"Content-Type": "application/json"}):
            response = await client.post(
                "/v1/secret-scanning/github", content=body, headers=headers
            )
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "invalid_signature"
        # The 401 is answered before anything is looked up or changed.
        assert (await verdict(client, key["key"]))["code"] == "valid"
    history = (await api.get(f"/v1/keys/{key['id']}/events")).json()["items"]
    assert [e["event_type"] for e in history] == ["KeyCreated"]


async def test_a_staging_key_anyone_reports_is_revoked_and_the_answer_says_nothing(
    account: Account, api: httpx.AsyncClient, instances: tuple[str, str]
) -> None:
    key = await create_key(api, name="pasted in a forum", environment="staging")
    malformed = [
        "",
        "ig_live_" + "x" * 36,
        key["key"][:-1] + ("0" if key["key"][-1] != "0" else "1"),
    ]
    async with httpx.AsyncClient(base_url=instances[0], timeout=30) as public:
        before = await secret_lookups(public)
        empty = await public.post("/v1/credentials/revoke", json={"credentials": []})
        reported = await public.post(
            "/v1/credentials/revoke", json={"credentials": [*malformed, key["key"]]}
        )
        assert empty.status_code == reported.status_code == 202
        assert reported.content == empty.content

        async def revoked() -> bool:
            status = (await api.get(f"/v1/keys/{key['id']}")).json()["status"]
            return bool(status == "revoked")

        await wait_until(revoked, timeout=60, what="the reported staging key revoked")
        # Reported in order after the answer: the malformed ones were never looked up.
        assert await secret_lookups(public) - before == 1

        candidates = [generate_secret("staging").plaintext for _ in range(1000)]
        many = await public.post("/v1/credentials/revoke", json={"credentials": candidates})
        assert many.status_code == 202 and many.content == empty.content

        async def all_looked_up() -> bool:
            return await secret_lookups(public) - before >= 1001

        await wait_until(all_looked_up, timeout=60, what="the 1,000 candidates looked up")
    history = (await api.get(f"/v1/keys/{key['id']}/events")).json()["items"]
    assert [e["event_type"] for e in history] == ["KeyRevoked", "KeyReportedLeaked", "KeyCreated"]
    assert history[1]["data"] == {"source": "public", "url": None, "action": "revoked"}
    assert history[1]["actor"]["id"] == "public-report"


async def test_a_source_that_reports_too_often_is_slowed_down(instances: tuple[str, str]) -> None:
    async with httpx.AsyncClient(base_url=instances[1], timeout=30) as public:
        statuses = [
            (await public.post("/v1/credentials/revoke", json={"credentials": []})).status_code
            for _ in range(PER_MINUTE + 1)
        ]
        assert statuses.count(429) >= 1 and statuses[0] == 202
        slowed = await public.post("/v1/credentials/revoke", json={"credentials": []})
    assert slowed.status_code == 429
    assert slowed.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(slowed.headers["Retry-After"]) <= 60


async def test_a_canary_tried_from_two_networks_raises_two_critical_alerts(
    stack: Stack, account: Account, api: httpx.AsyncClient, db: dict[str, asyncpg.Connection]
) -> None:
    canary = await create_key(api, name="aws creds (decoy)", canary=True)
    assert canary["canary"] is True and canary["key"].startswith("ig_live_")
    await known_to_usage(db["usage"], canary["id"])
    unknown = generate_secret("production").plaintext
    tries = [("198.51.100.23", "python-requests/2.31"), ("203.0.113.77", "curl/8.5.0")]
    for ip, agent in tries:
        context = {"source_ip": ip, "user_agent": agent, "endpoint": "/v1/generate"}
        tried = await api.post("/v1/verify", json={"key": canary["key"], **context})
        as_unknown = await api.post("/v1/verify", json={"key": unknown, **context})
        assert tried.status_code == as_unknown.status_code == 200
        assert tried.content == as_unknown.content == b'{"valid":false,"code":"not_found"}'

    async with account.client(stack.url("usage")) as usage:

        async def two() -> list[Any]:
            page = await usage.get(
                "/v1/alerts", params={"key_id": canary["id"], "kind": "canary_key_used"}
            )
            items: list[Any] = page.json()["items"]
            return items if len(items) >= 2 else []

        alerts = await wait_until(two, timeout=60, what="two canary_key_used alerts")
    assert {a["severity"] for a in alerts} == {"critical"}
    assert {a["evidence"]["network"] for a in alerts} == {"198.51.100.0/24", "203.0.113.0/24"}
    assert {a["evidence"]["user_agent"] for a in alerts} == {agent for _, agent in tries}
    assert {a["evidence"]["endpoint"] for a in alerts} == {"/v1/generate"}

    async with account.client(stack.url("audit")) as audit:

        async def in_audit() -> list[Any]:
            page = await audit_get(
                audit, "/v1/audit/events", key_id=canary["id"], action="alert.raised"
            )
            items: list[Any] = page.json()["items"]
            return items if len(items) >= 2 else []

        await wait_until(in_audit, timeout=60, what="the canary alerts in the audit log")
    created = (await api.get(f"/v1/keys/{canary['id']}/events")).json()["items"][-1]
    assert created["event_type"] == "KeyCreated" and created["data"]["canary"] is True


async def test_forward_auth_answers_a_canary_as_an_unknown_key_and_its_use_alerts(
    stack: Stack, account: Account, api: httpx.AsyncClient, db: dict[str, asyncpg.Connection]
) -> None:
    canary = await create_key(api, name="stripe creds (decoy)", canary=True)
    await known_to_usage(db["usage"], canary["id"])
    unknown = generate_secret("production").plaintext

    async def authorize(secret: str) -> httpx.Response:
        headers = {
            "X-Verifier-Key": account.admin_key,
            "Authorization": f"Bearer {secret}",
            "X-Forwarded-For": "192.0.2.41",
            "X-Original-URI": "/v1/generate?stream=1",
            "X-Request-Id": uuid.uuid4().hex,
            "User-Agent": "intruder/1.0",
        }
        async with httpx.AsyncClient(base_url=stack.url("keys"), timeout=15) as gateway:
            return await gateway.post("/v1/authorize", headers=headers)

    tried, as_unknown = await authorize(canary["key"]), await authorize(unknown)
    assert tried.status_code == as_unknown.status_code == 401
    assert tried.content == as_unknown.content
    assert tried.json()["error"]["code"] == "not_found"
    for header in ("x-error-code", "www-authenticate", "content-type"):
        assert tried.headers[header] == as_unknown.headers[header], header
    assert not {"x-key-id", "x-account-id"} & set(tried.headers)

    async with account.client(stack.url("usage")) as usage:

        async def raised() -> list[Any]:
            page = await usage.get(
                "/v1/alerts", params={"key_id": canary["id"], "kind": "canary_key_used"}
            )
            items: list[Any] = page.json()["items"]
            return items

        alerts = await wait_until(raised, timeout=60, what="a canary_key_used alert")
    assert alerts[0]["severity"] == "critical"
    assert alerts[0]["evidence"]["network"] == "192.0.2.0/24"
    assert alerts[0]["evidence"]["user_agent"] == "intruder/1.0"
    assert alerts[0]["evidence"]["endpoint"] == "/v1/generate"
