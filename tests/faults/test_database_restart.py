"""Point 3: PostgreSQL is stopped and started mid-stream. Meanwhile every `/ready` answers
503, and requests that need the database answer an error instead of hanging; afterwards
the same processes carry on and nothing is lost or counted twice."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest

from devstack import postgres, services
from servicekit.kafka import KafkaProducer
from tests.faults.support import MARKS, NAMES, pids, report, scale, under_load
from tests.support.processes import SERVICE
from tests.support.stack import Stack

pytestmark = MARKS
PROBES = scale(3, 10)  # rounds of requests while the database is down
TIMEOUT = 20.0  # the client's: an answer after this is a hang


async def test_a_database_restart_mid_stream_answers_503_and_loses_nothing(
    stack: Stack, producer: KafkaProducer
) -> None:
    if stack.mode != "local":
        pytest.skip("the database is not the local stack's: the suite cannot restart it")
    before = pids()
    statuses: Counter[str] = Counter()
    slowest = 0.0
    async with (
        under_load(stack, producer, "faults-db") as loaded,
        loaded.account.client() as api,
        httpx.AsyncClient(timeout=TIMEOUT, headers=loaded.account.headers) as client,
    ):
        created = await api.post("/v1/keys", json={"name": "verified through the outage"})
        secret = created.json()["key"]
        await asyncio.to_thread(postgres.stop)
        for _ in range(PROBES):
            requests = [(f"{SERVICE[n].url}/ready", "GET", None) for n in NAMES] + [
                (f"{SERVICE['keys'].url}/v1/keys", "GET", None),
                (f"{SERVICE['keys'].url}/v1/verify", "POST", {"key": secret}),
                (f"{SERVICE['audit'].url}/v1/audit/events", "GET", None),
                (f"{SERVICE['usage'].url}/v1/alerts", "GET", None),
            ]
            for url, method, body in requests:
                began = time.monotonic()
                answer = await client.request(method, url, json=body)
                slowest = max(slowest, time.monotonic() - began)
                path = url.split("/", 3)[-1]
                statuses[f"{method} /{path} {answer.status_code}"] += 1
                if path == "ready":
                    assert answer.status_code == 503, (url, answer.text)
                else:  # verify may answer from its cache; nothing answers 500
                    assert answer.status_code in (200, 503), (url, answer.text)
            await asyncio.sleep(0.5)
        await asyncio.to_thread(postgres.start)
        for name in NAMES:  # every /ready answers 200 again
            await services.wait_ready(SERVICE[name], timeout=90)
        await loaded.load.progressed(20)
    survived = pids() == before
    result, load = loaded.result, loaded.load
    assert result is not None

    refused = sum(n for k, n in statuses.items() if k.endswith(" 503"))
    report(
        "database",
        3,
        "PostgreSQL stopped and started under load",
        f"requests while down {sum(statuses.values())} ({refused} answered 503, none hung;"
        f" slowest {slowest * 1000:.0f} ms, client timeout {TIMEOUT:.0f} s); services restarted:"
        f" {'none' if survived else 'some'}; load HTTP answers {dict(load.statuses)};"
        f" {result.line()}",
        statuses=dict(statuses),
        slowest_seconds=slowest,
        services_survived=survived,
        **vars(result),
    )
    assert refused > 0 and slowest < TIMEOUT
    assert survived, (before, pids())
    result.assert_clean()
