"""A real browser for the console: Debian's Chromium (/usr/bin/chromium) driven headless by
Playwright. No browser is downloaded; `make test` installs the Debian package when missing.
Screenshots of every page go to test-results/console/."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from services.keys.domain.secret import SECRET_PATTERN
from tests.support.accounts import Account, new_account
from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-results" / "console"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# This machine has no internet: without these, Chromium keeps trying to reach Google.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium package")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        yield chromium
        await chromium.close()


@dataclass
class Console:
    """One person's browser session on the console, as one account's admin."""

    context: BrowserContext
    page: Page
    account: Account
    base_url: str
    requested: list[str] = field(default_factory=list)
    """Every URL the browser asked for, to prove nothing comes from elsewhere."""

    async def sign_in(self, access_key: str | None = None) -> None:
        await self.page.goto("/console/sign-in")
        await self.page.get_by_label("Access key").fill(access_key or self.account.admin_key)
        await self.page.get_by_role("button", name="Sign in").click()
        await self.page.wait_for_url("**/console/settings/access-keys**")

    async def signed_in_key(self) -> str:
        """The key id the console says the person signed in with."""
        text = await self.page.get_by_test_id("signed-in-key").first.inner_text()
        return text.strip()

    async def create_key(self, name: str, description: str) -> str:
        """Through the form, as a person does; returns the secret the page shows."""
        await self.page.goto("/console/settings/access-keys")
        await self.page.get_by_role("link", name="Add New Access Key").click()
        await self.page.get_by_label("Name").fill(name)
        await self.page.get_by_label("Description").fill(description)
        await self.page.get_by_role("button", name="Create").click()
        secret = await self.page.get_by_test_id("secret").input_value()
        assert SECRET_PATTERN.fullmatch(secret), "the page shows a well-formed key"
        return secret

    async def open_created(self) -> str:
        """From the page of a new secret, "Done" to the key's page; returns the key id."""
        await self.page.get_by_role("link", name="Done").click()
        return self.page.url.split("?")[0].split("/")[-1]

    async def verify(self, secret: str) -> dict[str, Any]:
        """What a gateway hears from /v1/verify about the secret."""
        async with self.account.client() as api:
            response = await api.post("/v1/verify", json={"key": secret})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def shot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0
        return path

    async def unlabelled_inputs(self) -> list[str]:
        """Every visible form control without a label (or aria-label) on the page."""
        found: list[str] = await self.page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')]
                .filter(el => el.type !== 'hidden')
                .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
                .map(el => el.outerHTML)"""
        )
        return found


@pytest.fixture
async def console(browser: Browser, stack: Stack) -> AsyncIterator[Console]:
    account = await new_account(stack, prefix="console")
    base_url = stack.url("keys")
    context = await browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    console = Console(context, page, account, base_url)
    page.on("request", lambda request: console.requested.append(request.url))
    yield console
    await context.close()
