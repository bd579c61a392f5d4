"""Point 7, after every other test of the session (marked runs_last, so in `make test` it
also covers the browser, integration and unit tests): no plaintext secret in any topic
(from its first offset), any service log (the killed processes' and the suite's own extra
processes' included), any service's metrics output, or any database dump, searched with
the secret scanner's regex (docs/secret-scanning.md); a match that is also a well-formed
key (valid checksum) is a leak."""

from __future__ import annotations

import httpx
import pytest

from contracts import ALL_TOPICS
from devstack import paths
from tests.faults.support import MARKS, NAMES, report
from tests.support.accounts import Account
from tests.support.processes import SERVICE
from tests.support.secrets import database_dump, leaks, topic_text
from tests.support.stack import Stack

pytestmark = [*MARKS, pytest.mark.runs_last]


async def test_no_plaintext_secret_anywhere_after_the_fault_suite(
    stack: Stack, account: Account, api: httpx.AsyncClient
) -> None:
    # The scanner finds a secret where there is one (so its silence below means something).
    secret = (await api.post("/v1/keys", json={"name": "scanner check"})).json()["key"]
    assert leaks(f"log line with {secret} in it") == [secret]

    texts: dict[str, str] = {}
    for topic in ALL_TOPICS:
        texts[f"topic {topic}"] = await topic_text(stack.kafka, topic)
    for log in sorted(paths.LOGS.glob("*.log")):
        texts[f"log {log.name}"] = log.read_text(errors="replace")
    async with httpx.AsyncClient(timeout=15) as client:
        for name in NAMES:
            texts[f"metrics {name}"] = (await client.get(f"{SERVICE[name].url}/metrics")).text
    databases = sorted({SERVICE[name].service for name in NAMES})  # usage-limits: usage's
    for name in databases:
        texts[f"dump {name}"] = await database_dump(stack, name)

    found = {where: s for where, text in texts.items() if (s := leaks(text))}
    scanned = {kind: sum(1 for w in texts if w.startswith(kind)) for kind in ("topic", "log")}
    megabytes = sum(len(t) for t in texts.values()) / 1e6
    report(
        "secrets",
        7,
        "plaintext secrets after the suite",
        f"scanned {scanned['topic']} topics, {scanned['log']} log files (of which"
        f" {sum(1 for w in texts if w.startswith('log faults-'))} of the suite's own processes),"
        f" {len(NAMES)} metrics outputs, {len(databases)} database dumps ({megabytes:.0f} MB);"
        f" plaintext secrets found {sum(len(s) for s in found.values())}",
        places=len(texts),
        found=found,
    )
    assert texts["dump keys"].count("COPY") > 0, "the keys database dump holds data"
    assert scanned["log"] > 0, "the services write logs under .run/logs"
    assert found == {}
