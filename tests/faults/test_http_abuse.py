"""Point 5: hostile HTTP against each service's own OpenAPI document. Generated paths,
queries and bodies never get a 5xx; an oversize body is refused with 413 before it is read;
a malformed Authorization header answers 401."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from servicekit.http import MAX_BODY_BYTES
from tests.faults.support import APIS, MARKS, generating, report, scale
from tests.support.accounts import Account
from tests.support.processes import SERVICE
from tests.support.stack import Stack

pytestmark = MARKS
EXAMPLES = scale(15, 100)  # per operation
PROTECTED = {"keys": "/v1/keys", "audit": "/v1/audit/events", "usage": "/v1/alerts"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
text = st.text(max_size=60)


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield method.upper(), path, operation


def requests_for(path: str, operation: dict[str, Any], known_ids: list[str]) -> Any:
    """A strategy of (path, query, body) for one operation."""
    params = operation.get("parameters", [])
    in_path = [p["name"] for p in params if p["in"] == "path"]
    in_query = [p["name"] for p in params if p["in"] == "query"]
    ids = st.sampled_from(known_ids) | st.uuids().map(str) | text.filter(bool)
    filled = st.fixed_dictionaries(dict.fromkeys(in_path, ids)).map(
        lambda values: path.format(**{k: quote(v, safe="") for k, v in values.items()})
    )
    query = st.fixed_dictionaries(
        {},
        optional={n: text | st.integers().map(str) | st.sampled_from(known_ids) for n in in_query},
    )
    bodies = (
        st.none() | json_values.map(json.dumps) | st.binary(max_size=200)
        if "requestBody" in operation
        else st.none()
    )
    return st.tuples(filled, query, bodies)


def run(client: httpx.Client, method: str, requests: Any, statuses: Counter[int]) -> None:
    """Send `EXAMPLES` generated requests of one operation; none may get a 5xx."""

    @generating(EXAMPLES)
    @given(requests)
    def call(request: tuple[str, dict[str, str], Any]) -> None:
        url, query, body = request
        content = body.encode() if isinstance(body, str) else body
        answer = client.request(
            method,
            url,
            params=query,
            content=content,
            headers={"Content-Type": "application/json"} if content is not None else {},
        )
        statuses[answer.status_code] += 1
        assert answer.status_code < 500, (method, url, query, body, answer.text)

    call()


def fuzz(service: str, account: Account, known_ids: list[str]) -> Counter[int]:
    """Run the generated requests (synchronously: hypothesis drives them)."""
    base = SERVICE[service].url
    document = httpx.get(f"{base}/openapi.json", timeout=10).json()
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=base, headers=account.headers, timeout=15) as client:
        for method, path, operation in operations(document):
            run(client, method, requests_for(path, operation, known_ids), statuses)
    return statuses


@pytest.mark.parametrize("service", APIS)
async def test_generated_requests_never_get_a_5xx(
    service: str, account: Account, api: httpx.AsyncClient
) -> None:
    created = await api.post("/v1/keys", json={"name": "fuzzed"})
    assert created.status_code == 201
    statuses = await asyncio.to_thread(fuzz, service, account, [created.json()["id"]])
    total = sum(statuses.values())
    report(
        f"http-{service}",
        5,
        f"generated requests against {service}'s OpenAPI",
        f"{total} requests ({EXAMPLES} per operation); statuses {dict(sorted(statuses.items()))};"
        " 5xx 0",
        requests=total,
        statuses=dict(statuses),
    )
    assert total > 0


async def test_an_oversize_body_is_refused_with_413_and_bad_authorization_with_401(
    stack: Stack, account: Account
) -> None:
    oversize = b'{"name": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}'

    async def streamed() -> Any:  # no Content-Length: the limit counts what arrives
        for start in range(0, len(oversize), 8192):
            yield oversize[start : start + 8192]

    # The key with its last character changed (to one it is not: 1 key in 62 ends in X).
    altered_last = b"Y" if account.admin_key.endswith("X") else b"X"
    malformed: list[bytes] = [
        b"",
        b"Bearer",
        b"bearer " + account.admin_key.encode()[:-1],
        b"Basic " + account.admin_key.encode(),
        b"Bearer " + account.admin_key.encode()[:-1] + altered_last,
        b"Bearer " + account.admin_key.encode() + b" extra",
        b"Bearer ig_live_",
        b"Bearer " + b"A" * 4000,
        b"Bearer \xff\xfe\xfd",
        b"Token=" + account.admin_key.encode(),
    ]
    refused: Counter[str] = Counter()
    async with httpx.AsyncClient(timeout=15) as client:
        for name in APIS:
            url = SERVICE[name].url + PROTECTED[name]
            for body in (oversize, streamed()):
                answer = await client.post(url, content=body, headers=account.headers)
                assert answer.status_code == 413, (name, answer.status_code, answer.text)
                assert answer.json()["error"]["code"] == "payload_too_large"
                refused["413"] += 1
            for value in malformed:
                answer = await client.get(url, headers={b"Authorization": value})
                assert answer.status_code == 401, (name, value, answer.status_code, answer.text)
                refused["401"] += 1
            without = await client.get(url)
            assert without.status_code == 401
            refused["401"] += 1
    report(
        "http-limits",
        5,
        "oversize bodies and malformed Authorization headers",
        f"oversize bodies refused with 413: {refused['413']}/{2 * len(APIS)};"
        f" malformed or missing Authorization answered 401: {refused['401']}/"
        f"{(len(malformed) + 1) * len(APIS)}",
        **refused,
    )
