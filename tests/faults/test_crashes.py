"""Point 1: each service is killed with SIGKILL and restarted while commands and usage
records keep coming; once drained, every stored event is on `keys.events` and in the
audit log exactly once, and usage counted every record once."""

from __future__ import annotations

from servicekit.kafka import KafkaProducer
from tests.faults.support import MARKS, NAMES, report, scale, under_load
from tests.support.processes import SERVICE, restart_service
from tests.support.stack import Stack

pytestmark = MARKS
KILLS = scale(1, 5)  # per service


async def test_every_service_killed_mid_load_loses_and_doubles_nothing(
    stack: Stack, producer: KafkaProducer
) -> None:
    rounds = 0
    async with under_load(stack, producer, "faults-crash") as loaded:
        for _ in range(KILLS):
            for name in NAMES:
                killed = SERVICE[name].process.pid()
                assert killed is not None, f"{name} is not running"
                SERVICE[name].process.kill()
                await loaded.load.progressed(5)  # the load goes on while it is down
                await restart_service(stack, name)
                assert SERVICE[name].process.pid() not in (None, killed)
                rounds += 1
                await loaded.load.progressed(10)
    result = loaded.result
    assert result is not None

    total = KILLS * len(NAMES)
    report(
        "crash",
        1,
        "SIGKILL of each service under load, restarted",
        f"crash rounds {rounds}/{total} ({KILLS} per service); {result.line()}",
        rounds=rounds,
        **vars(result),
    )
    assert rounds == total
    result.assert_clean()
