"""Point 8: account A's key with every scope, against every endpoint of the three services
that names a key, with account B's key id: each answers 404 when the id is the resource,
or exactly what it answers for a key that does not exist when the id is a filter (so not
even B's key's existence shows); nothing of B in any body."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx

from servicekit.kafka import KafkaProducer
from tests.faults.support import APIS, MARKS, report
from tests.support.accounts import Account, other_accounts_key
from tests.support.audit import wait_for_records
from tests.support.processes import SERVICE
from tests.support.stack import Stack
from tests.support.usage import now_minute, publish, record, wait_counted

pytestmark = MARKS
BODIES: dict[str, Any] = {  # a valid body, by the path's last segment
    "{key_id}": {"name": "Taken over"},
    "disable": {"reason": "Not yours"},
    "rotate": {"grace_period_seconds": 0},
}


def naming_a_key(document: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(method, path template, 'path' or 'query') of each operation that takes a key id."""
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "key_id":
                    yield method, path, parameter["in"]


async def ask(
    client: httpx.AsyncClient, url: str, method: str, where: str, key_id: str
) -> httpx.Response:
    body = BODIES.get(url.rsplit("/", 1)[-1]) if method in ("patch", "post") else None
    if where == "path":
        return await client.request(method, url.format(key_id=key_id), json=body)
    return await client.request(method, url, params={"key_id": key_id}, json=body)


async def test_another_accounts_ids_are_not_found_on_every_endpoint_of_every_service(
    stack: Stack,
    account: Account,
    producer: KafkaProducer,
    db: dict[str, asyncpg.Connection],
) -> None:
    b, b_key = await other_accounts_key(stack)
    # B's key has a history in audit and in usage too (each read from its own topic: the
    # scenario waits for both, or it could prove only that an unknown key is not found).
    await publish(producer, [record(b_key["id"], b.id, now_minute())])
    await wait_counted(db["usage"], b_key["id"], 1)
    await wait_for_records(db["audit"], b.id, 2)  # B's admin key, then B's key
    hidden = {
        "B's account id": b.id,
        "B's key name": b_key["name"],
        "B's prefix": b_key["prefix"],
        "B's description": "B only",
    }
    checked: dict[str, int] = {}
    async with httpx.AsyncClient(headers=account.headers, timeout=15) as client:
        for name in APIS:
            base = SERVICE[name].url
            document = (await client.get(f"{base}/openapi.json")).json()
            operations = list(naming_a_key(document))
            for method, path, where in operations:
                answer = await ask(client, base + path, method, where, b_key["id"])
                assert answer.status_code == 404, (method, path, answer.text)
                assert answer.json()["error"]["code"] == "not_found"
                if where == "query":  # a filter: B's key looks exactly like no key at all
                    nobody = await ask(client, base + path, method, where, str(uuid.uuid4()))
                    assert (nobody.status_code, nobody.json()) == (404, answer.json())
                leaked = [w for w, text in hidden.items() if text.encode() in answer.content]
                assert leaked == [], (method, path, answer.text)
            checked[name] = len(operations)

    async with b.client() as as_b:  # and none of it touched B's key
        untouched = (await as_b.get(f"/v1/keys/{b_key['id']}")).json()
    assert (untouched["status"], untouched["version"]) == ("active", 1)
    total = sum(checked.values())
    report(
        "tenants",
        8,
        "account A's admin key against every endpoint naming account B's key",
        f"{total} endpoints ({', '.join(f'{n} {c}' for n, c in checked.items())}): every"
        " answer 404 (as a filter too, the same answer as for an unknown key);"
        " B's data in any body 0",
        endpoints=checked,
    )
    assert all(checked.values())
