"""One "last used" (docs/last-used.md): a key the gateways report using, and never verified,
is used within seconds in the key service's API and in every console view, which stop
offering it as unused; a key that was only refused stays unused everywhere."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from contracts import USAGE_RECORDS, format_utc
from servicekit.kafka import KafkaProducer
from tests.browser.conftest import Console
from tests.support.usage import create_key, now_minute, publish, record
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack
USAGE_PAGE = "/console/settings/usage"
KEYS_PAGE = "/console/settings/access-keys"


async def _key(api: httpx.AsyncClient, key_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/keys/{key_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_key_the_gateways_report_is_used_in_the_api_and_every_console_view(
    console: Console, producer: KafkaProducer
) -> None:
    account, page = console.account, console.page
    async with account.client() as api:
        used = (await create_key(api, name="Gateway-Reported"))["id"]
        refused = (await create_key(api, name="Only-Refused"))["id"]
        await console.sign_in()
        await page.goto(USAGE_PAGE)
        assert await page.locator(f"tr[data-key-id='{used}']").count() == 1, "offered at first"

        at = now_minute(10)
        last_use = at + timedelta(minutes=1)
        traffic = [
            # Not uses of the key: another account's claim on its id, and its refusals.
            record(used, f"other-{uuid.uuid4().hex[:8]}", at + timedelta(minutes=3)),
            record(used, account.id, at + timedelta(minutes=2), status=401),
            record(used, account.id, at + timedelta(minutes=2), status=403),
            # The other key's only requests, refused. Sent ahead of the first use in the
            # same partition: once that use shows, these were read too.
            *(record(refused, account.id, at, status=s) for s in (401, 403)),
            # Uses, the latest first: whichever batch shows one shows the latest.
            record(used, account.id, last_use, status=429),  # limited, but the key was used
            record(used, account.id, at),
            record(used, account.id, at - timedelta(minutes=1), status=500),
            record(str(uuid.uuid4()), account.id, at),  # a key nobody holds: ignored
        ]
        await producer.send_many(
            USAGE_RECORDS,
            [(used.encode(), r.model_dump_json().encode(), ()) for r in traffic[:5]],
        )
        await publish(producer, traffic[5:])

        async def shown() -> str | None:
            last: str | None = (await _key(api, used))["last_used_at"]
            return last

        last = await wait_until(shown, timeout=30, what="the key's last use in GET /v1/keys/{id}")
        assert last == format_utc(last_use)
        listed = {k["id"]: k for k in (await api.get("/v1/keys")).json()["items"]}
        assert listed[used]["last_used_at"] == format_utc(last_use)
        assert listed[refused]["last_used_at"] is None
        assert (await _key(api, refused))["last_used_at"] is None

    await page.goto(KEYS_PAGE)
    row = page.locator(f"tr[data-key-id='{used}']")
    assert "minutes ago" in await row.inner_text()
    assert await row.get_by_test_id("unused").count() == 0
    assert await row.get_by_role("button", name="Disable unused key Gateway-Reported").count() == 0
    other = page.locator(f"tr[data-key-id='{refused}']")
    assert await other.get_by_test_id("unused").inner_text() == "Never used"

    await page.goto(f"{KEYS_PAGE}/{used}")
    assert "minutes ago" in await page.locator("dt:text-is('Last used') + dd").inner_text()
    assert await page.get_by_test_id("unused").count() == 0

    await page.goto(USAGE_PAGE)
    assert await page.locator(f"tr[data-key-id='{used}']").count() == 0
    assert await page.locator(f"tr[data-key-id='{refused}']").count() == 1
    await console.shot("12-last-used-from-usage")
