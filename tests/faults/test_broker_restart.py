"""Point 2: the broker is stopped and started mid-stream; the services' producers and
consumers recover by themselves (same processes), and nothing is lost or counted twice."""

from __future__ import annotations

import pytest

from contracts import KEYS_EVENTS
from servicekit.kafka import KafkaProducer
from tests.faults.support import MARKS, Load, ensure_stack_up, pids, reconcile, report, scale
from tests.support.accounts import new_account
from tests.support.kafka import TopicTail
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
    async with TopicTail(stack.kafka, KEYS_EVENTS) as tail:
        account = await new_account(stack, "faults-broker")
        async with Load(producer, account) as load:
            try:
                await load.progressed(20)
                for _ in range(RESTARTS):
                    await stack.restart_broker()
                    restarts += 1
                    await load.progressed(20)  # producing again through the new broker
            finally:
                await ensure_stack_up()
        # Not one service process was restarted to get there.
        survived = pids() == before
        result = await reconcile(stack, tail, {account.id}, [load])

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
