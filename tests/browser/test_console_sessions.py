"""Sign-in, the session cookie, CSRF protection and sign-out of the console."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.browser.conftest import Console

pytestmark = pytest.mark.stack


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
    await page.get_by_role("link", name="Done").click()
    key_id = page.url.split("?")[0].split("/")[-1]
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
    async with console.account.client() as api:
        manager = (
            await api.post("/v1/keys", json={"name": "manager", "scopes": ["keys:manage"]})
        ).json()
    await console.sign_in(manager["key"])
    async with console.account.client() as api:
        assert (await api.post(f"/v1/keys/{manager['id']}/disable")).status_code == 200
    await page.goto("/console/settings/access-keys")
    assert "/console/sign-in" in page.url
    await page.get_by_text("Signed out").wait_for()


async def test_next_only_goes_to_console_pages(console: Console) -> None:
    page = console.page
    await page.goto("/console/sign-in?next=https://evil.example/")
    await page.get_by_label("Access key").fill(console.account.admin_key)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()
    assert re.search(r"/console/settings/access-keys$", page.url)
