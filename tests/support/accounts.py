"""Fresh accounts for tests: each scenario gets its own, so scenarios never see each other."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from devstack import services
from tests.support.processes import service_cli
from tests.support.stack import Stack


@dataclass(frozen=True)
class Account:
    id: str
    admin_key: str
    """A key of this account with every platform scope."""
    keys_url: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def client(self, base_url: str | None = None) -> httpx.AsyncClient:
        """An HTTP client authenticated as this account's admin key."""
        return httpx.AsyncClient(
            base_url=base_url or self.keys_url, headers=self.headers, timeout=15.0
        )


async def new_account(stack: Stack, prefix: str = "acct") -> Account:
    """A new account, bootstrapped like `make admin-key ACCOUNT=...` does."""
    account_id = f"{prefix}-{uuid.uuid4().hex[:12]}"
    output = await asyncio.to_thread(
        services.create_admin_key, account_id, stack.kafka, stack.database_url
    )
    return Account(account_id, output.strip().splitlines()[-1], stack.url("keys"))


def keys_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """The operators' keys CLI against this stack; it must succeed."""
    done = service_cli(stack, "keys", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


async def operator_create_key(stack: Stack, account_id: str, name: str, *scopes: str) -> Any:
    """A key made by an operator with the keys CLI (which may grant any scope, e.g. the
    platform gateways' keys:verify:any-account); its JSON view, secret included."""
    args = ["create", "--account", account_id, "--name", name, "--json"]
    for scope in scopes:
        args += ["--scope", scope]
    done = await asyncio.to_thread(keys_cli, stack, *args)
    return json.loads(done.stdout)


async def other_accounts_key(stack: Stack) -> tuple[Account, dict[str, Any]]:
    """A second account (B) and a key it created, with a name worth hiding."""
    b = await new_account(stack, prefix="tenant-b")
    async with b.client() as as_b:
        created = await as_b.post(
            "/v1/keys", json={"name": "B's confidential payroll key", "description": "B only"}
        )
    assert created.status_code == 201, created.text
    key: dict[str, Any] = created.json()
    return b, key
