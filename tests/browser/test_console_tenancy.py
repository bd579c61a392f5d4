"""The console sees only the signed-in account: another account's key id, on every console
page and form that names a key, answers 404 and shows nothing of that account."""

from __future__ import annotations

import asyncpg
import pytest

from tests.browser.conftest import Console
from tests.support.accounts import other_accounts_key
from tests.support.audit import wait_for_records
from tests.support.stack import Stack

pytestmark = pytest.mark.stack


async def test_another_accounts_key_is_not_found_in_the_console(
    console: Console, stack: Stack, db: dict[str, asyncpg.Connection]
) -> None:
    b, b_key = await other_accounts_key(stack)
    # Audit reads B's key from keys.events: the audit tab below is asked about a key it
    # holds, not one it has not read yet.
    await wait_for_records(db["audit"], b.id, 2)  # B's admin key, then B's key
    page = console.page
    await console.sign_in()
    token = await page.locator("input[name=csrf_token]").first.input_value()
    hidden = (b.id, b_key["name"], b_key["prefix"])
    key_page = f"/console/settings/access-keys/{b_key['id']}"

    answers = [await page.request.get(path) for path in (key_page, f"{key_page}/revoke")]
    forms = {
        "edit": {"name": "Taken over", "version": "1"},
        "disable": {},
        "enable": {},
        "rotate": {"grace_period_seconds": "0"},
        "reveal": {},
        "revoke": {"confirm_name": b_key["name"]},
    }
    for action, form in forms.items():
        answers.append(
            await page.request.post(f"{key_page}/{action}", form={"csrf_token": token, **form})
        )
    assert [a.status for a in answers] == [404] * len(answers)
    for query in (f"?key_id={b_key['id']}", f"?actor_id={b_key['id']}"):
        answers.append(await page.request.get(f"/console/settings/audit{query}"))
        answers.append(await page.request.get(f"/console/settings/audit.csv{query}"))
    answers.append(await page.request.get(f"/console/settings/usage?key_id={b_key['id']}"))
    for answer in answers:
        body = await answer.text()
        assert not [h for h in hidden if h in body], answer.url
    async with b.client() as as_b:
        after = (await as_b.get(f"/v1/keys/{b_key['id']}")).json()
    assert (after["name"], after["status"], after["version"]) == (b_key["name"], "active", 1)
