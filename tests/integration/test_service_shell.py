"""What every service process offers operators: health, readiness, metrics, API documents,
a clean stop on SIGTERM, and a one-line refusal of a malformed setting."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from contracts import KEYS_COMMANDS, KEYS_EVENTS, USAGE_RECORDS
from tests.support.processes import ROOT, free_port, service_env, spawn
from tests.support.stack import Stack
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack
SERVICES = ("keys", "audit", "usage")
READS = {
    "keys": {KEYS_COMMANDS, KEYS_EVENTS, USAGE_RECORDS},
    "audit": {KEYS_EVENTS},
    "usage": {USAGE_RECORDS, KEYS_EVENTS},
}


@pytest.mark.parametrize("service", SERVICES)
async def test_each_service_answers_the_operational_endpoints(
    stack: Stack, http: httpx.AsyncClient, service: str
) -> None:
    base = stack.url(service)
    assert (await http.get(f"{base}/health")).json() == {"status": "ok"}
    ready = await http.get(f"{base}/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "kafka": "ok"}
    metrics = await http.get(f"{base}/metrics")
    assert metrics.status_code == 200
    assert "instagen_http_requests_total" in metrics.text
    assert (await http.get(f"{base}/docs")).status_code == 200
    openapi = (await http.get(f"{base}/openapi.json")).json()
    assert "/ready" in openapi["paths"]
    asyncapi = (await http.get(f"{base}/asyncapi")).json()
    addresses = {channel["address"] for channel in asyncapi["channels"].values()}
    assert READS[service] <= addresses


UNAUTHENTICATED_PATHS = {"/v1/secret-scanning/github", "/v1/credentials/revoke"}
"""Leak reports (docs/secret-scanning.md): GitHub signs its own, anyone may send the other."""
FORWARD_AUTH = "/v1/authorize"
"""Forward auth (docs/gateways.md): the gateway's key in X-Verifier-Key, the client's as given."""


@pytest.mark.parametrize("service", SERVICES)
async def test_every_operation_behind_a_key_declares_the_bearer_scheme(
    stack: Stack, http: httpx.AsyncClient, service: str
) -> None:
    """A client generated from the document sends the key as the document says: through
    the security scheme, not an `Authorization` parameter of its own."""
    document = (await http.get(f"{stack.url(service)}/openapi.json")).json()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            headers = {p["name"].lower() for p in operation.get("parameters", [])}
            if path == FORWARD_AUTH:  # the gateway's key is the scheme; the client's, judged
                assert operation.get("security") == [{"VerifierKey": []}], (method, path)
                assert {"authorization", "x-api-key"} <= headers, (method, path)
                continue
            if path in UNAUTHENTICATED_PATHS:  # signed by GitHub, or open to anyone
                assert "security" not in operation, (method, path)
            elif path.startswith("/v1/"):
                assert operation.get("security") == [{"HTTPBearer": []}], (method, path)
                assert "401" in operation["responses"], (method, path)
            assert "authorization" not in headers, (method, path)


@pytest.mark.parametrize("service", SERVICES)
async def test_an_undeclared_method_is_a_405_naming_the_declared_ones(
    stack: Stack, http: httpx.AsyncClient, service: str
) -> None:
    base = stack.url(service)
    document = (await http.get(f"{base}/openapi.json")).json()
    for template, operations in document["paths"].items():
        declared = {method.upper() for method in operations}
        path = re.sub(r"\{[a-z_]+\}", str(uuid.uuid4()), template)
        for method in {"PUT", "DELETE", "PATCH", "POST"} - declared:
            answer = await http.request(method, base + path)
            assert answer.status_code == 405, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "method_not_allowed"
            assert set(answer.headers["allow"].split(", ")) - {"HEAD"} == declared, (method, path)


async def test_an_unknown_route_answers_the_error_shape(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    response = await http.get(f"{stack.url('keys')}/no/such/route")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_an_oversize_body_is_refused_with_413(stack: Stack, http: httpx.AsyncClient) -> None:
    response = await http.post(f"{stack.url('keys')}/health", content=b"x" * (1024 * 1024))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KEYS_HTTP_PORT", "eighty"),
        ("KAFKA_BOOTSTRAP_SERVERS", "not a host list"),
        ("DATABASE_URL", "mysql://somewhere/db"),
        ("LOG_LEVEL", "LOUD"),
        ("KEYS_GITHUB_PUBLIC_KEYS", '{"public_keys": [{"key_identifier": "k", "key": "no PEM"}]}'),
        ("KEYS_GITHUB_PUBLIC_KEYS", '{"public_keys": [1]}'),
        ("KEYS_GITHUB_PUBLIC_KEYS", "not json"),
        ("KEYS_GITHUB_PUBLIC_KEYS_FILE", "/nonexistent/github-public-keys.json"),
    ],
)
def test_a_malformed_setting_stops_the_service_with_one_line_naming_it(
    stack: Stack, variable: str, value: str
) -> None:
    env = service_env(stack, "keys", **{variable: value})
    done = subprocess.run(
        [sys.executable, "-m", "services.keys"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert variable in lines[0]
    assert "Traceback" not in done.stderr


async def test_sigterm_stops_a_service_cleanly(
    stack: Stack, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "usage.log"
    proc = spawn("usage", service_env(stack, "usage", USAGE_HTTP_PORT=str(port)), log)
    try:

        async def ready() -> bool:
            try:
                return (await http.get(f"http://127.0.0.1:{port}/ready")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(ready, timeout=60, what="the second usage instance to be ready")
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 40)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0
    events = [
        json.loads(line).get("event")
        for line in log.read_text().splitlines()
        if line.startswith("{")
    ]
    assert "stopping" in events and "stopped" in events
