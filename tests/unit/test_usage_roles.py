"""USAGE_ROLE: which parts of the usage service a process runs (docs/limits.md "Two
processes"). `make up` and docker-compose run an ingest process and a limit counter
process; `all` runs both in one. Read from each process's AsyncAPI and OpenAPI documents,
without starting it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.usage.bootstrap import build
from services.usage.settings import UsageSettings

INGEST = {
    "usage.records:consume",
    "keys.events:consume",
    "keys.events:forget-cached-callers",
    "usage.alerts:publish",
    "usage.alerts:deliver-webhooks",
    "keys.commands:publish",
}
LIMITS = {"usage.records:count-limits", "keys.events:count-limits", "usage.limits:publish"}


async def _documents(role: str) -> tuple[set[str], dict[str, Any]]:
    app = build(UsageSettings(usage_role=role))
    transport = httpx.ASGITransport(app=app)  # no lifespan: nothing connects
    async with httpx.AsyncClient(transport=transport, base_url="http://usage") as client:
        operations = set((await client.get("/asyncapi")).json()["operations"])
        return operations, (await client.get("/openapi.json")).json()["paths"]


@pytest.mark.parametrize(
    ("role", "expected"), [("ingest", INGEST), ("limits", LIMITS), ("all", INGEST | LIMITS)]
)
async def test_each_role_reads_and_writes_its_own_topics(role: str, expected: set[str]) -> None:
    operations, _ = await _documents(role)
    assert operations == expected


async def test_the_limit_counter_reads_in_its_own_group_and_serves_only_its_probes() -> None:
    settings = UsageSettings(usage_role="limits")
    assert settings.usage_limits_consumer_group != settings.usage_consumer_group
    _, paths = await _documents("limits")
    assert set(paths) <= {"/health", "/ready", "/metrics", "/asyncapi"}
    _, ingest_paths = await _documents("ingest")
    assert "/v1/alerts" in ingest_paths


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="usage_role"):
        UsageSettings(usage_role="both")
