"""A key reported leaked, as its owner sees it in the console: the report (who, where,
when) and one click to rotate and enable; and a canary key made with the checkbox."""

from __future__ import annotations

import httpx
import pytest

from services.keys.domain.secret import SECRET_PATTERN
from tests.browser.conftest import Console
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack


async def report_publicly(base_url: str, secret: str) -> None:
    """As anyone who found the key: /v1/credentials/revoke, waiting out a 429 (other
    scenarios report from this address too)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as public:

        async def accepted() -> bool:
            answer = await public.post("/v1/credentials/revoke", json={"credentials": [secret]})
            return answer.status_code == 202

        await wait_until(accepted, timeout=90, interval=1.0, what="the report accepted")


async def test_a_quarantined_key_shows_its_report_and_is_rotated_and_enabled(
    console: Console,
) -> None:
    page = console.page
    await console.sign_in()
    leaked = await console.create_key("Leaked-Backend", "Pasted into a public gist.")
    key_id = await console.open_created()
    key_url = page.url.split("?")[0]

    await report_publicly(console.base_url, leaked)

    async def quarantined() -> bool:
        return bool((await console.verify(leaked))["code"] == "disabled")

    await wait_until(quarantined, timeout=30, what="the reported key quarantined")
    await page.goto(key_url)
    report = page.get_by_test_id("leak-report")
    await report.wait_for()
    assert await page.get_by_test_id("leak-source").inner_text() == "public"
    assert "Disabled (quarantined)" in await report.inner_text()
    assert await page.get_by_test_id("status").inner_text() == "disabled"
    await console.shot("20-key-reported-leaked")

    await report.get_by_role("button", name="Rotate and enable").click()
    fresh = await page.get_by_test_id("secret").input_value()
    assert SECRET_PATTERN.fullmatch(fresh) and fresh != leaked
    assert (await console.verify(fresh))["valid"] is True
    assert (await console.verify(leaked))["valid"] is False  # the leaked secret, for good
    await page.goto(key_url)
    assert await page.get_by_test_id("status").inner_text() == "active"
    assert not await report.get_by_role("button", name="Rotate and enable").is_visible()
    async with console.account.client() as api:
        history = (await api.get(f"/v1/keys/{key_id}/events")).json()["items"]
    assert [e["event_type"] for e in history][:2] == ["KeyEnabled", "KeyRotated"]


async def test_a_canary_key_is_made_with_a_checkbox_and_never_works(console: Console) -> None:
    page = console.page
    await console.sign_in()
    await page.goto("/console/settings/access-keys/new")
    await page.get_by_label("Name").fill("prod-db-backup-creds")
    await page.get_by_label("Canary key (a decoy)").check()
    await page.get_by_role("button", name="Create").click()
    decoy = await page.get_by_test_id("secret").input_value()
    assert SECRET_PATTERN.fullmatch(decoy), "a canary looks like any other key"
    await console.open_created()
    assert await page.get_by_test_id("canary").inner_text() == "canary"
    assert (await console.verify(decoy)) == {"valid": False, "code": "not_found"}
    await console.shot("21-canary-key")
