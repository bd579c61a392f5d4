"""Point 2: the broker is stopped and started mid-stream; the services' producers and
consumers recover by themselves (same processes), and nothing is lost or counted twice."""

from __future__ import annotations

import pytest

from servicekit.kafka import KafkaProducer
from tests.faults.support import MARKS, pids, report, scale, under_load
from tests.support.stack import Stack

pytestmark = MARKS
RESTARTS = scale(1, 3)


async def test_a_broker_restart_mid_stream_loses_and_doubles_nothing(
    stack: Stack, producer: KafkaProducer
) -> None:
    if not stack.broker_restartable:
        pytest.skip("the broker is external: the suite cannot restart it")
    before = pids()
    restarts = 0
    async with under_load(stack, producer, "faults-broker") as loaded:
        for _ in range(RESTARTS):
            await stack.restart_broker()
            restarts += 1
            await loaded.load.progressed(20)  # producing again through the new broker
    survived = pids() == before  # not one service process was restarted to get there
    result = loaded.result
    assert result is not None

    report(
        "broker",
        2,
        "Kafka stopped and started under load",
        f"broker restarts {restarts}/{RESTARTS}, services restarted:"
        f" {'none' if survived else 'some'}; {result.line()}",
        restarts=restarts,
        services_survived=survived,
        **vars(result),
    )
    assert survived, (before, pids())
    result.assert_clean()
