"""The product page's flow in a real browser, end to end against the running stack:
sign in, create a key with a name and a description, copy it, see it listed, use it,
disable it, and find both actions in the audit log and the key's traffic in its chart."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from servicekit.kafka import KafkaProducer
from services.keys.domain.secret import SECRET_PATTERN
from services.usage.demo import Demo
from tests.browser.conftest import Console
from tests.support.usage import known_to_usage, publish, wait_counted
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack


async def demo_traffic(console: Console, key: dict[str, Any]) -> list[Any]:
    """Gateway traffic for the key over the last hours, made by the demo's own generator."""
    demo = Demo(console.base_url, console.account.admin_key)
    try:
        return demo.traffic(key, minutes_ago=150, minutes=120, per_minute=2) + demo.traffic(
            key, minutes_ago=40, minutes=10, per_minute=3, status=500
        )
    finally:
        await demo.keys.aclose()


async def test_product_flow_in_the_browser(
    console: Console, producer: KafkaProducer, db: dict[str, asyncpg.Connection]
) -> None:
    page = console.page
    await page.goto("/console/settings/access-keys")
    assert "/console/sign-in" in page.url, "the console asks who you are first"
    await console.shot("01-sign-in")
    await console.sign_in()
    actor = await console.signed_in_key()
    await console.shot("02-access-keys-empty")

    # Step 2: generate a new key with a name and a description.
    await page.get_by_role("link", name="Add New Access Key").click()
    await page.get_by_label("Name").fill("Production-LLM-API")
    await page.get_by_label("Description").fill(
        "Production API key for our main web application.\nContact: dev-team@company.com"
    )
    await console.shot("03-add-new-access-key")
    await page.get_by_role("button", name="Create").click()

    # Step 3: the key is shown at once; the copy button puts exactly that on the clipboard.
    shown = await page.get_by_test_id("secret").input_value()
    assert SECRET_PATTERN.fullmatch(shown)
    await page.get_by_role("button", name="Copy").click()
    await page.get_by_text("The key is on your clipboard.").wait_for()
    assert await page.evaluate("navigator.clipboard.readText()") == shown
    await console.shot("04-new-key-shown")

    # It is in the list, and a gateway's /v1/verify accepts it.
    key_id = await console.open_created()
    await page.get_by_role("link", name="All access keys").click()
    row = page.locator(f"tr[data-key-id='{key_id}']")
    assert "Production-LLM-API" in await row.inner_text()
    assert "main web application" in await row.inner_text()
    assert shown[:12] in await row.inner_text(), "the list shows the key's prefix"
    await console.shot("05-access-keys-listed")
    accepted = await console.verify(shown)
    assert (accepted["valid"], accepted["key_id"]) == (True, key_id)

    # Demo traffic for the key, then its chart.
    key = {"id": key_id, "account_id": console.account.id}
    traffic = await demo_traffic(console, key)
    await known_to_usage(db["usage"], key_id)
    await publish(producer, traffic)
    await wait_counted(db["usage"], key_id, len(traffic))
    await page.goto(f"/console/settings/access-keys/{key_id}")
    totals = page.get_by_test_id("usage-totals")
    assert await totals.get_attribute("data-requests") == str(len(traffic))
    assert await totals.get_attribute("data-errors") == "30"
    points = await page.locator("polyline.requests").get_attribute("points") or ""
    heights = {float(p.split(",")[1]) for p in points.split()}
    assert len(heights) > 1, "the requests line is not flat: it shows the traffic"
    await console.shot("06-key-with-usage-chart")
    await page.get_by_role("link", name="Last 7 days").click()
    assert await totals.get_attribute("data-requests") == str(len(traffic))
    await page.get_by_role("link", name="Last 24 hours").click()

    # Disable it in the console: /v1/verify refuses it from then on.
    await page.get_by_label("Reason (optional)").fill("no longer used by the web app")
    await page.get_by_role("button", name="Disable").click()
    await page.get_by_text("The key is disabled").wait_for()
    assert await page.get_by_test_id("status").inner_text() == "disabled"
    refused = await console.verify(shown)
    assert (refused["valid"], refused["code"]) == (False, "disabled")

    # The audit tab shows both actions, by the signed-in key.
    await page.get_by_role("link", name="Audit log").click()

    async def both_recorded() -> bool:
        await page.goto(f"/console/settings/audit?key_id={key_id}")
        actions = await page.locator("table.audit tbody tr").evaluate_all(
            "rows => rows.map(r => [r.dataset.action, r.dataset.actorId])"
        )
        # Alerts the traffic raised about the key may be listed too (alert.raised).
        changes = sorted(a for a in actions if a[0].startswith("key."))
        return changes == [["key.created", actor], ["key.disabled", actor]]

    await wait_until(both_recorded, timeout=60, what="the audit tab to show create and disable")
    await console.shot("07-audit-log")

    download_link = page.get_by_role("link", name="Download CSV")
    async with page.expect_download() as pending:
        await download_link.click()
    download = await pending.value
    csv = (await download.path()).read_text()
    assert csv.count("key.created") == 1 and csv.count("key.disabled") == 1
    assert actor in csv

    # The refused use of the disabled key reached the usage service: its alert is listed.
    async def alert_listed() -> bool:
        await page.goto("/console/settings/usage?kind=disabled_key_in_use")
        return await page.locator("li.alert[data-kind=disabled_key_in_use]").count() == 1

    await wait_until(alert_listed, timeout=60, what="the disabled_key_in_use alert in the console")
    summary = await page.locator("li.alert[data-kind=disabled_key_in_use]").inner_text()
    assert "disabled" in summary.lower() and key_id in summary
    await page.get_by_role("link", name="Usage & alerts").click()
    await console.shot("08-usage-and-alerts")

    elsewhere = [u for u in console.requested if not u.startswith(console.base_url + "/")]
    assert len(console.requested) > 20 and elsewhere == [], "every asset is the console's own"


async def test_create_with_the_keyboard_alone_and_every_input_labelled(console: Console) -> None:
    page = console.page
    await console.sign_in()
    assert await console.unlabelled_inputs() == []

    async def tab_to(description: str, test: str) -> None:
        for _ in range(60):
            await page.keyboard.press("Tab")
            if await page.evaluate(f"(el => {test})(document.activeElement)"):
                return
        raise AssertionError(f"Tab never reached {description}")

    await tab_to("Add New Access Key", "el.textContent.trim() === 'Add New Access Key'")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/access-keys/new")
    assert await console.unlabelled_inputs() == []
    assert await page.evaluate("document.activeElement.id") == "name", "the name field has focus"
    await page.keyboard.type("Keyboard-Only-Key")
    await tab_to("the description", "el.id === 'description'")
    await page.keyboard.type("Made without a mouse.")
    await tab_to("the environment", "el.id === 'environment'")
    await page.keyboard.press("ArrowDown")  # production -> staging
    await tab_to("Create", "el.textContent.trim() === 'Create'")
    await page.keyboard.press("Enter")
    await page.get_by_test_id("secret").wait_for()
    assert await console.unlabelled_inputs() == []
    shown = await page.get_by_test_id("secret").input_value()
    await tab_to("Copy", "el.textContent.trim() === 'Copy'")
    await page.keyboard.press("Enter")
    await page.get_by_text("The key is on your clipboard.").wait_for()
    assert await page.evaluate("navigator.clipboard.readText()") == shown
    assert (await console.verify(shown))["environment"] == "staging"
    async with console.account.client() as api:
        listed = (await api.get("/v1/keys")).json()["items"]
    made = [k for k in listed if k["name"] == "Keyboard-Only-Key"]
    assert [k["description"] for k in made] == ["Made without a mouse."]

    for path in (
        "/console/settings/usage",
        "/console/settings/audit",
        f"/console/settings/access-keys/{made[0]['id']}",
        f"/console/settings/access-keys/{made[0]['id']}/revoke",
    ):
        await page.goto(path)
        assert await console.unlabelled_inputs() == [], path
