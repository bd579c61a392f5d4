"""After every other scenario has run (this file sorts last): no plaintext secret anywhere.

Every topic from its first offset, every service log and a `pg_dump` of each service's
database are searched with the secret scanner's regex (docs/secret-scanning.md); a match
that is also a well-formed key (valid checksum) is a leak.
"""

from __future__ import annotations

import pytest

from contracts import ALL_TOPICS
from devstack import paths
from tests.support.secrets import database_dump, leaks, topic_text
from tests.support.stack import Stack

pytestmark = pytest.mark.stack


async def test_no_topic_holds_a_plaintext_secret(stack: Stack) -> None:
    found = {topic: leaks(await topic_text(stack.kafka, topic)) for topic in ALL_TOPICS}
    assert {t: s for t, s in found.items() if s} == {}


def test_no_service_log_holds_a_plaintext_secret() -> None:
    logs = sorted(paths.LOGS.glob("*.log"))
    assert logs, "the services write logs under .run/logs"
    found = {log.name: leaks(log.read_text(errors="replace")) for log in logs}
    assert {name: s for name, s in found.items() if s} == {}


async def test_no_database_holds_a_plaintext_secret(stack: Stack) -> None:
    dumps = {}
    for service in ("keys", "audit", "usage"):
        dump = await database_dump(stack, service)
        assert "COPY" in dump or service != "keys", "the keys database dump holds data"
        dumps[service] = leaks(dump)
    assert {s: found for s, found in dumps.items() if found} == {}
