"""The console's pure parts: the usage chart, form parsing, redirects, CSRF tokens, and
which answer its routes give before any session is looked at."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import cast

import httpx
import pytest
from fastapi import FastAPI

from services.keys.app.context import KeysContext
from services.keys.console.backends import BackendError, Backends
from services.keys.console.chart import build_chart
from services.keys.console.context import Console, ConsoleConfig
from services.keys.console.forms import FormInvalid, key_attributes, local_page
from services.keys.console.install import install
from services.keys.console.sessions import ConsoleSecrets, Session, SessionStore, SignInThrottle

NOW = datetime(2026, 11, 26, 18, 30, tzinfo=UTC)


def bucket(hours_ago: int, requests: int, errors: int = 0) -> dict[str, object]:
    start = NOW.replace(minute=0) - timedelta(hours=hours_ago)
    return {"start": start.isoformat(), "requests": requests, "status_4xx": errors, "status_5xx": 0}


def test_the_chart_fills_missing_hours_with_zeros_and_keeps_every_request() -> None:
    chart = build_chart("24h", NOW, [bucket(0, 40, 4), bucket(5, 10), bucket(30, 999)])
    assert len(chart.buckets) == 24
    assert (chart.total_requests, chart.total_errors) == (50, 4), "older than 24 h is left out"
    assert chart.buckets[-1].start == NOW.replace(minute=0)
    assert chart.buckets[-1].requests == 40 and chart.buckets[-6].requests == 10
    assert chart.peak == 40
    ys = [float(p.split(",")[1]) for p in chart.requests_points.split()]
    assert len(ys) == 24 and min(ys) < max(ys)


def test_the_week_chart_sums_hours_into_six_hour_buckets() -> None:
    chart = build_chart("7d", NOW, [bucket(0, 1), bucket(1, 2), bucket(2, 3), bucket(100, 7)])
    assert len(chart.buckets) == 28
    assert chart.total_requests == 13
    assert (chart.buckets[-2].requests, chart.buckets[-1].requests) == (5, 1)


def test_an_empty_chart_is_flat_at_zero() -> None:
    chart = build_chart("24h", NOW, [])
    assert chart.total_requests == 0 and chart.peak == 1
    assert len({p.split(",")[1] for p in chart.requests_points.split()}) == 1


@pytest.mark.parametrize(
    ("target", "goes_to"),
    [
        ("/console/settings/audit?key_id=1", "/console/settings/audit?key_id=1"),
        ("https://evil.example/", "/console/settings/access-keys"),
        ("//evil.example/console/", "/console/settings/access-keys"),
        ("/console/\\evil", "/console/settings/access-keys"),
        ("/v1/keys", "/console/settings/access-keys"),
    ],
)
def test_after_sign_in_only_console_pages_are_a_destination(target: str, goes_to: str) -> None:
    assert local_page(target) == goes_to


def test_the_create_form_sets_every_kind_of_limit_and_names_a_bad_network() -> None:
    made = key_attributes(
        {
            "name": "Batch jobs",
            "rate_limit_per_minute": "60",
            "rate_limit_per_day": "10000",
            "token_budget_tokens": "2000000",
            "token_budget_period": "day",
            "allowed_cidrs": "203.0.113.0/24\r\n2001:db8::/32, 198.51.100.7",
            "expires_in_days": "",
        },
        [],
    )
    assert (made.rate_limit_per_minute, made.rate_limit_per_day) == (60, 10000)
    assert made.token_budget is not None and made.token_budget.tokens == 2_000_000
    assert made.allowed_cidrs == ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]
    with pytest.raises(FormInvalid) as invalid:
        key_attributes(
            {"name": "x", "expires_in_days": "", "allowed_cidrs": "10.0.0.1/8",
             "token_budget_tokens": "0"},
            [],
        )  # fmt: skip
    assert set(invalid.value.fields) == {"allowed_cidrs", "token_budget"}


def test_the_create_form_becomes_keykey_attributes() -> None:
    made = key_attributes(
        {
            "name": " Production-LLM-API ",
            "description": "Used by the chatbot.\nContact: dev-team@company.com",
            "environment": "staging",
            "rate_limit_per_hour": "1000",
            "expires_in_days": "30",
            "scopes": "usage:read",
        },
        ["usage:read"],
    )
    assert (made.name, made.environment, made.rate_limit_per_hour) == (
        "Production-LLM-API", "staging", 1000,
    )  # fmt: skip
    assert made.scopes == ["usage:read"]
    assert made.expires_at is not None
    assert timedelta(days=29) < made.expires_at - datetime.now(UTC) <= timedelta(days=30)
    with pytest.raises(FormInvalid) as invalid:
        key_attributes({"name": "", "rate_limit_per_hour": "many"}, [])
    assert set(invalid.value.fields) == {"name", "rate_limit_per_hour"}
    for refused, field in (
        ({"name": "x", "expires_in_days": "\u00b2"}, "expires_at"),
        ({"name": "x", "expires_in_days": "99999999"}, "expires_at"),
        ({"name": "x", "scopes": "keys:verify:any-account"}, "scopes"),
        ({"name": ["a", "b"]}, "name"),
    ):
        with pytest.raises(FormInvalid) as invalid:
            key_attributes(refused, ["usage:read"])
        assert set(invalid.value.fields) == {field}, refused


def test_csrf_tokens_are_bound_to_their_session() -> None:
    secrets = ConsoleSecrets(b"k" * 32)
    token = secrets.csrf_token("session-a")
    assert secrets.csrf_ok("session-a", token)
    assert not secrets.csrf_ok("session-b", token)
    assert not secrets.csrf_ok("session-a", None)
    assert not secrets.csrf_ok(None, token)
    assert not ConsoleSecrets(b"j" * 32).csrf_ok("session-a", token), "another master key"


def test_a_sealed_session_key_opens_only_for_its_session() -> None:
    secrets = ConsoleSecrets(b"k" * 32)
    first, second = uuid.uuid4(), uuid.uuid4()
    sealed = secrets.seal(first, "ig_live_secret")
    assert b"ig_live_secret" not in sealed
    assert secrets.open(first, sealed) == "ig_live_secret"
    assert secrets.open(second, sealed) is None
    session = Session(first, uuid.uuid4(), "demo", "ig_live_secret", "token")
    assert "ig_live_secret" not in repr(session) and "token" not in repr(session)


async def test_a_service_that_does_not_answer_is_a_message_not_a_crash() -> None:
    backends = Backends("http://127.0.0.1:9", "http://127.0.0.1:9")
    try:
        with pytest.raises(BackendError, match="The usage service did not answer"):
            await backends.alerts("ig_live_x")
        with pytest.raises(BackendError, match="The audit service did not answer"):
            await backends.open_export("ig_live_x", "csv")
    finally:
        await backends.close()


def test_sign_in_guessing_is_slowed_per_address() -> None:
    now = [0.0]
    throttle = SignInThrottle(limit=3, window=60, max_addresses=2, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.wait_seconds("203.0.113.7") == 0
        throttle.refused("203.0.113.7")
    assert throttle.wait_seconds("203.0.113.7") == 60
    assert throttle.wait_seconds("198.51.100.1") == 0, "other addresses are not affected"
    now[0] = 30.0
    assert throttle.wait_seconds("203.0.113.7") == 30
    now[0] = 60.0
    assert throttle.wait_seconds("203.0.113.7") == 0, "the window has passed"
    throttle.refused("a")
    throttle.refused("b")
    assert len(throttle._refused) == 2, "memory stays bounded"


class NoSessions:
    """A session store that knows no session: every caller is signed out."""

    async def find(self, token: str | None) -> Session | None:
        return None


def signed_out_console() -> httpx.AsyncClient:
    """The console on an app of its own, where nobody is signed in."""
    app = FastAPI()
    install(
        app,
        Console(
            cast(KeysContext, None),  # never reached: nobody is signed in
            cast(SessionStore, NoSessions()),
            ConsoleSecrets(b"k" * 32),
            Backends("http://127.0.0.1:9", "http://127.0.0.1:9"),
            ConsoleConfig(reveal_enabled=False, secure_cookies=False),
        ),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://console")


async def test_an_address_that_names_no_key_is_no_page_whether_signed_in_or_not() -> None:
    keys = "/console/settings/access-keys"
    a_key = f"{keys}/{uuid.uuid4()}"
    async with signed_out_console() as client:
        for path in (f"{keys}/not-a-uuid", f"{keys}/not-a-uuid/revoke"):
            answer = await client.get(path)
            assert (answer.status_code, answer.headers["content-type"][:9]) == (404, "text/html")
            assert "There is no such page" in answer.text
        assert (await client.post(f"{keys}/not-a-uuid/disable", data={})).status_code == 404
        answer = await client.get(f"{a_key}?range=7d")
        assert answer.status_code == 303, "a key's address: sign in first, then back to it"
        assert answer.headers["location"] == (
            "/console/sign-in?next=" + a_key.replace("/", "%2F") + "%3Frange%3D7d"
        )
        answer = await client.post(f"{a_key}/disable", data={})
        assert answer.status_code == 303, "a form: sign in first, then to the keys"
        assert (
            answer.headers["location"]
            == "/console/sign-in?next=%2Fconsole%2Fsettings%2Faccess-keys"
        )


async def test_the_console_is_not_part_of_the_api_document() -> None:
    async with signed_out_console() as client:
        document = (await client.get("/openapi.json")).json()
    assert document.get("paths", {}) == {}, "console routes stay out of the OpenAPI document"
