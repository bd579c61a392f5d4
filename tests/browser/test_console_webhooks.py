"""Webhooks in the console: a URL the usage service refuses says why; a created webhook
shows its signing secret once, is listed, has a (still empty) delivery log, and goes; a
webhook disabled after a day of failures is enabled again."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.browser.conftest import Console
from tests.support.stack import Stack

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


async def test_a_disabled_webhook_is_enabled_again(console: Console, stack: Stack) -> None:
    page = console.page
    await console.sign_in()
    await page.goto("/console/settings/webhooks")
    await page.get_by_label("Endpoint URL").fill("https://93.184.216.34/mended")
    await page.get_by_role("button", name="Add webhook").click()
    webhook_id = await page.locator("tr[data-webhook-id]").get_attribute("data-webhook-id")
    # What the delivery worker does after a day of failed tries (2 s in the webhook tests).
    conn = await asyncpg.connect(stack.database("usage"))
    try:
        await conn.execute(
            "UPDATE webhooks SET failing_since = now() - interval '1 day', disabled_at = now()"
            " WHERE webhook_id = $1",
            uuid.UUID(webhook_id),
        )
    finally:
        await conn.close()
    await page.goto("/console/settings/webhooks")
    row = page.locator(f"tr[data-webhook-id='{webhook_id}']")
    assert "disabled" in await row.inner_text()
    await page.get_by_role("button", name="Enable webhook https://93.184.216.34/mended").click()
    await page.get_by_text("The webhook is active again").wait_for()
    text = await row.inner_text()
    assert "active" in text and "failing since" not in text
    assert await page.get_by_role("button", name="Enable webhook").count() == 0
