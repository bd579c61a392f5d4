"""No 5xx from input, anywhere: every operation of every service, each of its parameters
and each field of its body given empty, oversized, wrong-typed, non-UTF-8 and
control-character values, answers a 4xx with the shared error body (or, where the value
happens to be acceptable, a success); never a 5xx, never another shape.

Unlike the property-based tests, this one walks a fixed list, so it sends the same
requests every run and covers every parameter every time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.support.accounts import Account
from tests.support.stack import Stack

# Raw query/path text (already percent-encoded where that is what a client would send).
HOSTILE_TEXT = {
    "empty": "",
    "oversized": "x" * 5000,
    "wrong type": "%5B%5D%7B%7D",  # []{}
    "not UTF-8": "%FF%FE%FD",
    "NUL": "%00",
    "control": "%01%1F%7F%C2%85",
    "bidi override": "%E2%80%AE",
}
HOSTILE_HEADER = {
    "empty": b"",
    "oversized": b"x" * 5000,
    "not UTF-8": b"\xff\xfe\xfd",
}
INVALID_HTTP_HEADER = b"\x01\x7f"
"""Control characters are no field value in HTTP (RFC 9110 5.5): the server's HTTP parser
refuses the request with a 400 before any application code sees it."""
HOSTILE_JSON: dict[str, Any] = {
    "empty": "",
    "oversized": "x" * 5000,
    "number": 12345678901234567890,
    "bool": True,
    "null": None,
    "list": [],
    "object": {},
    "NUL": "\x00",
    "control": "\x01\u0085",
    "lone surrogate": "\ud800",
}
HOSTILE_BODIES = {
    "empty": b"",
    "not UTF-8": b"\xff\xfe{",
    "not JSON": b"{name: 1",
    "a list": b"[]",
    "a string": b'"x"',
}


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def body_fields(document: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    schema = content.get("schema", {})
    ref = schema.get("$ref") or next(
        (b.get("$ref") for b in schema.get("anyOf", []) if "$ref" in b), None
    )
    if ref:
        schema = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return list(schema.get("properties", {}))


def _check(answer: httpx.Response, what: str) -> None:
    assert answer.status_code < 500, f"{what}: {answer.status_code} {answer.text[:300]}"
    # No redirect either: an empty path parameter leaves a path with a trailing slash,
    # which no operation has (a 404 with the error body), not a 307 no document names.
    assert not 300 <= answer.status_code < 400, (what, answer.status_code)
    if answer.status_code >= 400:
        assert answer.headers.get("content-type") == "application/json", (what, answer.text)
        if answer.request.method == "HEAD":  # the headers of the JSON error, never a body
            assert not answer.content, what
            return
        body = answer.json()
        assert set(body) == {"error"}, (what, body)
        assert isinstance(body["error"]["code"], str), (what, body)
        assert isinstance(body["error"]["message"], str), (what, body)


def _raw_url(base: str, path: str, query: str = "") -> httpx.URL:
    # Built by hand so that the hostile bytes reach the server as they are.
    return httpx.URL(base + path + (f"?{query}" if query else ""))


def _fill(path: str, key_id: str, hostile: tuple[str, str] | None = None) -> str:
    filled = path.replace("{key_id}", quote(key_id))
    if hostile is not None:
        filled = path.replace("{" + hostile[0] + "}", hostile[1])
        filled = filled.replace("{key_id}", quote(key_id))
    return filled


def walk(client: httpx.Client, base: str, document: dict[str, Any], key_id: str) -> dict[str, int]:
    sent = {"parameters": 0, "body fields": 0, "bodies": 0}
    for method, path, operation in operations(document):
        parameters = operation.get("parameters", [])
        for parameter in parameters:
            name, where = parameter["name"], parameter["in"]
            for label, value in HOSTILE_TEXT.items():
                what = f"{method} {path} {where} {name}={label}"
                if where == "path":
                    url = _raw_url(base, _fill(path, key_id, (name, value)))
                    answer = client.request(method, url)
                elif where == "query":
                    answer = client.request(
                        method, _raw_url(base, _fill(path, key_id), f"{name}={value}")
                    )
                else:
                    continue
                _check(answer, what)
                sent["parameters"] += 1
            if where == "header":
                for label, raw in HOSTILE_HEADER.items():
                    url = _raw_url(base, _fill(path, key_id))
                    answer = client.request(method, url, headers=[(name.encode(), raw)])
                    _check(answer, f"{method} {path} header {name}={label}")
                    sent["parameters"] += 1
                url = _raw_url(base, _fill(path, key_id))
                answer = client.request(method, url, headers=[(name.encode(), INVALID_HTTP_HEADER)])
                assert answer.status_code == 400, (method, path, name, answer.status_code)
        if "requestBody" not in operation:
            continue
        url = _raw_url(base, _fill(path, key_id))
        json_type = {"Content-Type": "application/json"}
        for label, raw in HOSTILE_BODIES.items():
            _check(
                client.request(method, url, content=raw, headers=json_type),
                f"{method} {path} body {label}",
            )
            sent["bodies"] += 1
        for field in body_fields(document, operation):
            for label, value in HOSTILE_JSON.items():
                raw = json.dumps({"name": "hostile", field: value}).encode()
                answer = client.request(method, url, content=raw, headers=json_type)
                _check(answer, f"{method} {path} body {field}={label}")
                sent["body fields"] += 1
    return sent


@pytest.mark.parametrize("service", ["keys", "audit", "usage"])
async def test_hostile_values_in_every_parameter_never_get_a_5xx(
    service: str, stack: Stack, account: Account, api: httpx.AsyncClient
) -> None:
    created = await api.post("/v1/keys", json={"name": "hostile values"})
    assert created.status_code == 201, created.text
    base = stack.url(service)
    document = (await api.get(f"{base}/openapi.json")).json()
    with httpx.Client(headers=account.headers, timeout=15) as client:
        sent = await asyncio.to_thread(walk, client, base, document, created.json()["id"])
    assert sent["parameters"] > 0, sent
