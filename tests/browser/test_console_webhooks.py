"""Webhooks in the console: a URL the usage service refuses says why; a created webhook
shows its signing secret once, is listed, has a (still empty) delivery log, and goes."""

from __future__ import annotations

import uuid

import pytest

from tests.browser.conftest import Console

pytestmark = pytest.mark.stack


async def test_a_webhook_created_shown_once_and_deleted(console: Console) -> None:
    page = console.page
    await console.sign_in()
    await page.goto("/console/settings/webhooks")
    await page.get_by_text("No webhooks yet.").wait_for()
    answer = await page.goto(f"/console/settings/webhooks/{uuid.uuid4()}")
    assert answer is not None and answer.status == 404
    await page.goto("/console/settings/webhooks")
    await page.get_by_label("Endpoint URL").fill("https://127.0.0.1/hooks")
    await page.get_by_role("button", name="Add webhook").click()
    await page.get_by_role("alert").filter(has_text="loopback address").wait_for()

    await page.get_by_label("Endpoint URL").fill("https://93.184.216.34/instagen")
    await page.get_by_label("disabled key in use").check()
    await page.get_by_label("Least severe alert sent").select_option("critical")
    assert await console.unlabelled_inputs() == []
    await page.get_by_role("button", name="Add webhook").click()
    secret = await page.get_by_test_id("secret").input_value()
    assert secret.startswith("whsec_")
    await console.shot("20-webhook-created")
    row = page.locator("tr[data-webhook-id]")
    assert "disabled key in use, critical and above" in await row.inner_text()

    await page.goto("/console/settings/webhooks")
    assert await page.get_by_test_id("secret").count() == 0  # shown once
    assert secret not in await page.content()
    await page.get_by_role("link", name="https://93.184.216.34/instagen").click()
    await page.get_by_text("Nothing delivered yet.").wait_for()
    await page.get_by_role("link", name="All webhooks").click()
    await page.get_by_role("button", name="Delete webhook https://93.184.216.34/instagen").click()
    await page.get_by_text("The webhook was deleted.").wait_for()
    await page.get_by_text("No webhooks yet.").wait_for()
