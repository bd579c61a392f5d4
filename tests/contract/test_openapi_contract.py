"""Every service answers as its own OpenAPI document says, checked by an independent
property-based fuzzer (schemathesis) reading that document from the running service.

It fails on a 5xx, a status or header the document does not declare, a body that breaks
its schema, a schema-valid request refused by validation, a schema-invalid one accepted,
and a wrong answer to an undeclared method. Left out: `use_after_free`, since DELETE
revokes a key and a revoked key stays readable (its history is the audit trail), and
schemathesis' positive_data_acceptance, replaced by the stricter-but-fair check in
schemathesis_hooks.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from contracts import USAGE_RECORDS
from servicekit.kafka import KafkaProducer
from tests.support.accounts import Account
from tests.support.stack import Stack
from tests.support.usage import create_key, now_minute, publish, steady
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
SEED = os.environ.get("CONTRACT_SEED", "20261202")
EXAMPLES = {"keys": 40, "audit": 60, "usage": 60}
MIN_REQUESTS = {"keys": 500, "audit": 50, "usage": 50}
"""The issue asks for at least 500 generated requests against the keys service."""


async def _seed(account: Account, producer: KafkaProducer) -> str:
    """A key with usage and an audit trail, so the fuzzer reaches the answers with data."""
    async with account.client() as api:
        key = await create_key(api, name="contract scenario")
        await api.post(f"/v1/keys/{key['id']}/disable", json={"reason": "contract"})
    records = steady(key["id"], account.id, now_minute(10), minutes=3, per_minute=5)
    await publish(producer, records, USAGE_RECORDS)
    return str(key["id"])


async def _fuzz(stack: Stack, account: Account, service: str, key_id: str, tmp: Path) -> str:
    config = tmp / "schemathesis.toml"
    # audit and usage fuzz their other parameters against a key that has data.
    config.write_text("" if service == "keys" else f'[parameters]\nkey_id = "{key_id}"\n')
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(config),
        "run",
        f"{stack.url(service)}/openapi.json",
        "--header",
        f"Authorization: Bearer {account.admin_key}",
        "--checks",
        "all",
        "--exclude-checks",
        "use_after_free,positive_data_acceptance",
        "--max-examples",
        str(EXAMPLES[service]),
        "--seed",
        SEED,
        # One worker: with two threads, CPython 3.11's ast.parse (schemathesis compiles
        # with it) can fail with "AST constructor recursion depth mismatch" under load.
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--no-color",
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.contract.schemathesis_hooks",
        "PYTHONPATH": str(ROOT),
    }
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=tmp,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=240)
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"schemathesis found problems in {service}:\n{text[-6000:]}"
    return text


@pytest.mark.parametrize("service", ["keys", "audit", "usage"])
async def test_each_service_answers_as_its_openapi_document_says(
    service: str, stack: Stack, account: Account, producer: KafkaProducer, tmp_path: Path
) -> None:
    key_id = await _seed(account, producer)
    async with account.client(stack.url("usage")) as usage:

        async def counted() -> bool:
            response = await usage.get(f"/v1/usage/keys/{key_id}")
            return response.status_code == 200 and "requests" in response.text

        await wait_until(counted, timeout=60, what="usage of the seeded key")
    text = await _fuzz(stack, account, service, key_id, tmp_path)
    generated = re.search(r"(\d+) generated", text)
    assert generated, text[-2000:]
    assert int(generated.group(1)) >= MIN_REQUESTS[service], text[-2000:]
