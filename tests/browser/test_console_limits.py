"""A key's limits in the console: set on the new-key form, shown on the key's page with what
remains of each window, and a limited key's state as the usage service published it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from contracts import USAGE_LIMITS, LimitState, window_bounds
from contracts.limits import LimitWindow
from servicekit.kafka import KafkaProducer
from tests.browser.conftest import Console
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack


async def test_limits_set_on_the_form_and_a_limited_key_shown(
    console: Console, producer: KafkaProducer
) -> None:
    page = console.page
    await console.sign_in()
    await page.goto("/console/settings/access-keys/new")
    await page.get_by_label("Name").fill("Batch-Jobs")
    await page.get_by_label("Allowed networks").fill("203.0.113.0/33")
    await page.get_by_role("button", name="Create").click()
    await page.get_by_text("allowed cidrs:").wait_for()  # refused, the field named
    assert await page.get_by_label("Allowed networks").get_attribute("aria-invalid") == "true"

    await page.get_by_label("Requests per minute").fill("60")
    await page.get_by_label("Requests per day").fill("10000")
    await page.get_by_label("Token budget").fill("50000")
    await page.get_by_label("Budget period").select_option("day")
    await page.get_by_label("Allowed networks").fill("203.0.113.0/24\n2001:db8::/32")
    assert await console.unlabelled_inputs() == []
    await page.get_by_role("button", name="Create").click()
    secret = await page.get_by_test_id("secret").input_value()
    key_id = await console.open_created()

    limits = page.get_by_test_id("limits")
    rows = await limits.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.limit)")
    assert rows == ["rate_limit_per_minute", "rate_limit_per_day", "token_budget"]
    assert "2001:db8::/32" in await page.get_by_test_id("allowed-cidrs").inner_text()
    async with console.account.client() as api:
        answer = await api.post("/v1/verify", json={"key": secret, "source_ip": "203.0.113.9"})
    assert answer.json()["limits"]["rate_limit_per_day"]["remaining"] == 9999

    day_end = window_bounds("token_budget", "day", datetime.now(UTC))[1]
    state = LimitState(
        key_id=uuid.UUID(key_id),
        account_id=console.account.id,
        state="budget_exhausted",
        limit_name="token_budget",
        until=day_end,
        counted=50_100,
        limit=50_000,
        as_of=datetime.now(UTC),
        windows={"token_budget": LimitWindow(counted=50_100, limit=50_000, reset_at=day_end)},
    )
    await producer.send(USAGE_LIMITS, state.model_dump_json().encode(), key=key_id.encode())

    async def shown_limited() -> bool:
        await page.reload()
        return await page.get_by_test_id("limited").count() == 1

    await wait_until(shown_limited, timeout=15, what="the key page to show the key limited")
    assert await page.get_by_test_id("limited").get_attribute("data-state") == "budget_exhausted"
    await console.shot("13-key-limited")
