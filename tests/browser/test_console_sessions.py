"""Sign-in, the session cookie, CSRF protection and sign-out of the console."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Console

pytestmark = pytest.mark.stack


async def manager_key(console: Console) -> dict[str, Any]:
    """A second key of the account that may only manage keys."""
    async with console.account.client() as api:
        made = await api.post("/v1/keys", json={"name": "manager", "scopes": ["keys:manage"]})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


async def test_the_session_cookie_is_httponly_and_strict(console: Console) -> None:
    await console.sign_in()
    cookies = {c["name"]: c for c in await console.context.cookies()}
    session = cookies["instagen_console"]
    assert session["httpOnly"] is True and session["sameSite"] == "Strict"
    assert session["path"] == "/console"
    assert console.account.admin_key not in session["value"], "the cookie is an opaque token"
    assert await console.page.evaluate("document.cookie") == "", "no script can read it"


async def test_a_form_without_the_sessions_csrf_token_changes_nothing(console: Console) -> None:
    page = console.page
    await console.sign_in()
    secret = await console.create_key("CSRF target", "")
    key_id = await console.open_created()
    disable = f"/console/settings/access-keys/{key_id}/disable"
    forged = await page.request.post(disable, form={"csrf_token": "0" * 64})
    assert (
        forged.status == 403 and "expired or did not come from this console" in await forged.text()
    )
    missing = await page.request.post(disable, form={"reason": "x"})
    assert missing.status == 403
    token = await page.locator("input[name=csrf_token]").first.input_value()
    other_site = await page.request.post(
        disable, form={"csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert other_site.status == 403
    async with console.account.client() as api:
        assert (await api.post("/v1/verify", json={"key": secret})).json()["valid"] is True


async def test_sign_in_refusals_and_sign_out(console: Console) -> None:
    page = console.page
    await page.goto("/console/sign-in")
    await page.get_by_label("Access key").fill("ig_live_not-a-real-key")
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text("That access key is not accepted").wait_for()

    # A key without keys:manage cannot sign in.
    async with console.account.client() as api:
        reader = (
            await api.post("/v1/keys", json={"name": "reader", "scopes": ["usage:read"]})
        ).json()
    await page.get_by_label("Access key").fill(reader["key"])
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text("lacks the scope keys:manage").wait_for()

    await console.sign_in()
    token = {c["name"]: c["value"] for c in await console.context.cookies()}["instagen_console"]
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_text("You are signed out.").wait_for()
    # The old cookie is worth nothing after sign-out.
    async with httpx.AsyncClient(
        base_url=console.base_url, headers={"Cookie": f"instagen_console={token}"}
    ) as client:
        replay = await client.get("/console/settings/access-keys")
    assert replay.status_code == 303 and "/console/sign-in" in replay.headers["location"]


async def test_disabling_the_signed_in_key_ends_its_session(console: Console) -> None:
    page = console.page
    manager = await manager_key(console)
    await console.sign_in(manager["key"])
    async with console.account.client() as api:
        assert (await api.post(f"/v1/keys/{manager['id']}/disable")).status_code == 200
    await page.goto("/console/settings/access-keys")
    assert "/console/sign-in" in page.url
    await page.get_by_text("Your session ended").wait_for()


async def test_next_only_goes_to_console_pages(console: Console) -> None:
    page = console.page
    await page.goto("/console/sign-in?next=https://evil.example/")
    await page.get_by_label("Access key").fill(console.account.admin_key)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()
    assert re.search(r"/console/settings/access-keys$", page.url)


async def test_bad_input_of_any_kind_gets_a_page_never_a_500(console: Console) -> None:
    page = console.page
    await console.sign_in()
    await console.create_key("Target", "")
    await console.open_created()
    key_page = page.url.split("?")[0]
    token = await page.locator("input[name=csrf_token]").first.input_value()
    keys = "/console/settings/access-keys"
    posts = [
        (keys, {"name": "x", "expires_in_days": "\u00b2"}, 422, "expiry"),
        (keys, {"name": "x", "expires_in_days": "99999999"}, 422, "expiry"),
        (keys, {"name": "x", "scopes": "keys:verify:any-account"}, 422, "scopes offered"),
        (keys, {"name": "", "rate_limit_per_hour": "many"}, 422, "rate limit per hour"),
        (f"{key_page}/rotate", {"grace_period_seconds": "\u00b2"}, 422, "grace periods"),
        (f"{key_page}/disable", {"reason": "a\x00b"}, 422, "reason"),
        (f"{key_page}/edit", {"name": "n", "version": "v1"}, 422, "reload the page"),
        (f"{key_page}/revoke", {"confirm_name": "nope"}, 422, "exactly to confirm"),
    ]
    for path, form, status, says in posts:
        answer = await page.request.post(path, form={"csrf_token": token, **form})
        assert (answer.status, answer.headers["content-type"][:9]) == (status, "text/html"), path
        assert says in await answer.text(), (path, form)
    gets = [
        f"{keys}/not-a-uuid",
        f"{keys}/{'0' * 8}-0000-0000-0000-{'0' * 12}",
        f"{keys}?cursor=0001-01-01T00:00:00%2B01:00|x",
        "/console/settings/audit?until=9999-12-31",
        "/console/settings/audit?key_id=nope",
        "/console/settings/audit.csv?since=2026-13-45",
        f"{key_page}?range=forever",
    ]
    for path in gets:
        answer = await page.request.get(path)
        assert 400 <= answer.status < 500 or answer.status == 200, (path, answer.status)
        assert answer.headers["content-type"].startswith("text/html"), path
    async with console.account.client() as api:
        names = [k["name"] for k in (await api.get("/v1/keys")).json()["items"]]
    assert names.count("x") == 0 and "Target" in names, "nothing was made of the bad forms"


async def test_rotating_the_signed_in_key_keeps_the_session(console: Console) -> None:
    page = console.page
    manager = await manager_key(console)
    await console.sign_in(manager["key"])
    await page.goto(f"/console/settings/access-keys/{manager['id']}")
    await page.get_by_role("button", name="Rotate").click()
    rotated = await page.get_by_test_id("secret").input_value()
    assert rotated != manager["key"]
    await page.goto("/console/settings/access-keys")
    assert "/console/sign-in" not in page.url, "still signed in, now with the new secret"
    assert (await console.verify(manager["key"]))["valid"] is False
