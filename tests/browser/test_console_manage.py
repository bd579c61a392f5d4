"""Managing a key in the console: rename and describe, rotate, view again, disable and
enable, revoke after a confirmation, and the unused-key marker with its one-click disable."""

from __future__ import annotations

import pytest

from services.keys.domain.secret import SECRET_PATTERN
from tests.browser.conftest import Console

pytestmark = pytest.mark.stack


async def test_rename_rotate_view_again_disable_enable_revoke(console: Console) -> None:
    page = console.page
    await console.sign_in()
    first = await console.create_key("WebApp-Integration", "Used by the web app.")
    key_id = await console.open_created()
    key_url = page.url.split("?")[0]

    await page.get_by_label("Name", exact=True).fill("Mobile-App-Access")
    await page.get_by_label("Description", exact=True).fill(
        "Moved to the mobile app.\nContact: m@x.io"
    )
    await page.get_by_role("button", name="Save").click()
    await page.get_by_text("The key was saved.").wait_for()
    assert await page.get_by_role("heading", name="Mobile-App-Access").is_visible()

    # Viewing it again shows the same secret (and is recorded).
    await page.get_by_role("button", name="View key").click()
    assert await page.get_by_test_id("secret").input_value() == first
    await console.shot("09-key-viewed-again")

    # Rotation: a new secret at once; without a grace period the old one is refused.
    await page.goto(key_url)
    await page.get_by_label("Previous secret keeps working for").select_option("0")
    await page.get_by_role("button", name="Rotate").click()
    second = await page.get_by_test_id("secret").input_value()
    assert SECRET_PATTERN.fullmatch(second) and second != first
    assert (await console.verify(second))["valid"] is True
    assert (await console.verify(first))["valid"] is False

    # Disable, then enable again.
    await page.goto(key_url)
    await page.get_by_role("button", name="Disable").click()
    await page.get_by_role("button", name="Enable").click()
    await page.get_by_text("The key is enabled again.").wait_for()
    assert (await console.verify(second))["valid"] is True

    # Revoke asks first; a wrong confirmation changes nothing.
    await page.get_by_role("link", name="Revoke…").click()
    await console.shot("10-revoke-confirmation")
    await page.get_by_label("Type the key's name").fill("not the name")
    await page.get_by_role("button", name="Revoke key").click()
    await page.get_by_text("Type the key's name exactly to confirm.").wait_for()
    assert (await console.verify(second))["valid"] is True
    await page.get_by_label("Type the key's name").fill("Mobile-App-Access")
    await page.get_by_role("button", name="Revoke key").click()
    await page.get_by_text("The key is revoked for good").wait_for()
    assert await page.get_by_test_id("status").inner_text() == "revoked"
    assert (await console.verify(second))["code"] == "revoked"

    history = await page.locator("table.history tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.eventType)"
    )
    assert history == [
        "KeyRevoked", "KeyEnabled", "KeyDisabled", "KeyRotated", "KeyRevealed", "KeyUpdated",
        "KeyCreated",
    ]  # fmt: skip
    async with console.account.client() as api:
        events = (await api.get(f"/v1/keys/{key_id}/events")).json()["items"]
    assert len(events) == len(history)


async def test_unused_key_is_marked_and_disabled_in_one_click(console: Console) -> None:
    page = console.page
    await console.sign_in()
    secret = await console.create_key("Testing-Environment", "")
    await page.goto("/console/settings/access-keys")
    key_id = await page.locator("tbody tr").first.get_attribute("data-key-id")
    row = page.locator(f"tr[data-key-id='{key_id}']")
    assert await row.get_by_test_id("unused").inner_text() == "Never used"
    await row.get_by_role("button", name="Disable unused key Testing-Environment").click()
    await page.get_by_text("The key is disabled").wait_for()
    assert "disabled" in await page.locator(f"tr[data-key-id='{key_id}']").inner_text()
    assert await page.locator(f"tr[data-key-id='{key_id}'] [data-testid=unused]").count() == 0
    assert (await console.verify(secret))["code"] == "disabled"


async def test_a_secret_form_sent_again_changes_nothing_more(console: Console) -> None:
    """Refreshing the page that shows a new secret sends its form again: the console then
    says it was done already, and no second key or rotation is made."""
    page = console.page
    await console.sign_in()
    await page.goto("/console/settings/access-keys/new")
    await page.get_by_label("Name").fill("Refreshed-Once")
    sent = await page.locator("form:has([name=once])").evaluate(
        "f => Object.fromEntries(new FormData(f))"
    )
    await page.get_by_role("button", name="Create").click()
    secret = await page.get_by_test_id("secret").input_value()

    again = await page.request.post("/console/settings/access-keys", form=sent)
    assert again.status == 409
    text = await again.text()
    assert "Already done" in text and secret not in text
    # The same form changed (back, edit, send) is a new request: a key of its own.
    changed = await page.request.post(
        "/console/settings/access-keys", form={**sent, "name": "Refreshed-Changed"}
    )
    assert changed.status == 201
    async with console.account.client() as api:
        names = [k["name"] for k in (await api.get("/v1/keys")).json()["items"]]
        assert names.count("Refreshed-Once") == 1 and names.count("Refreshed-Changed") == 1

        key_id = await console.open_created()
        rotate_form = page.locator(f"form[action$='/{key_id}/rotate']")
        resent = await rotate_form.evaluate("f => Object.fromEntries(new FormData(f))")
        await page.get_by_role("button", name="Rotate").click()
        rotated = await page.get_by_test_id("secret").input_value()
        twice = await page.request.post(
            f"/console/settings/access-keys/{key_id}/rotate", form=resent
        )
        assert twice.status == 409 and "Already done" in await twice.text()
        await page.reload()  # what a person does: the browser sends the form again
        await page.get_by_role("heading", name="Already done").wait_for()
        await console.shot("11-form-sent-again")
        await page.get_by_role("link", name="Open the key").click()
        assert page.url.split("?")[0].endswith(f"/access-keys/{key_id}")
        events = (await api.get(f"/v1/keys/{key_id}/events")).json()["items"]
        assert [e["event_type"] for e in events].count("KeyRotated") == 1
        assert (await api.post("/v1/verify", json={"key": rotated})).json()["valid"] is True
