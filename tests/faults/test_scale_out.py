"""Point 10: two processes of each service at once. Each consumer group shares its topics'
partitions between them; a killed process's partitions go to the other, and the
reconciliation of point 1 still holds. With two keys processes, verification and
revocation behave as with one."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

from servicekit.kafka import KafkaProducer
from tests.faults.support import MARKS, NAMES, fault_log, report, under_load
from tests.support.accounts import Account
from tests.support.processes import SERVICE, another_instance
from tests.support.stack import Stack
from tests.support.wait import until_the_cache_expires, wait_until

pytestmark = MARKS
GROUPS = {  # each service's consumer group reads these topics, 3 partitions each
    "keys": ("keys.commands", "usage.records"),  # the latter for each key's last use
    "audit": ("keys.events", "keys.command-results", "usage.alerts"),
    "usage": ("keys.events", "usage.records"),
    "usage-limits": ("keys.events", "usage.records"),  # the limit counter's own group
}
ALL = {0, 1, 2}
_ASSIGNED = re.compile(r"^(\S+ \S+) .*Consumer (\S+) assigned to partitions: (.*)$")
_PARTITION = re.compile(r"topic='([^']+)', partition=(\d+)")


def assignments(log: Path, since: str = "") -> dict[str, list[set[int]]]:
    """Each topic's partitions held by the process writing `log`, one set per consumer
    (a process may read a topic in two groups, as a usage process of USAGE_ROLE=all does),
    by the consumers' newest assignments (logged after `since`, a log timestamp)."""
    newest: dict[str, list[tuple[str, str]]] = {}
    for line in log.read_text(errors="replace").splitlines():
        found = _ASSIGNED.match(line)
        if found and found[1] >= since:
            newest[found[2]] = _PARTITION.findall(found[3])
    held: dict[str, list[set[int]]] = {}
    for pairs in newest.values():
        mine: dict[str, set[int]] = {}
        for topic, partition in pairs:
            mine.setdefault(topic, set()).add(int(partition))
        for topic, partitions in mine.items():
            held.setdefault(topic, []).append(partitions)
    return held


async def _code(url: str, account: Account, secret: str) -> str:
    async with account.client(url) as client:
        answer = await client.post("/v1/verify", json={"key": secret})
    code: str = answer.json()["code"]
    return code


async def _refused_by_both(
    urls: list[str], account: Account, secret: str, code: str, cached_since: float
) -> None:
    """Before the valid answer both cached (by requests sent from `cached_since` on) may
    expire: only the change's invalidation passes this."""

    async def refused() -> bool:
        return all([await _code(url, account, secret) == code for url in urls])

    await wait_until(
        refused,
        timeout=until_the_cache_expires(cached_since),
        interval=0.05,
        what=f"{code} on both keys processes",
    )


async def test_two_processes_of_each_service_share_the_work_and_survive_a_kill(
    stack: Stack, producer: KafkaProducer
) -> None:
    logs = {name: fault_log(f"{name}-second") for name in NAMES}
    shared: dict[str, dict[str, tuple[int, int]]] = {}
    async with contextlib.AsyncExitStack() as extras:
        second = {
            name: await extras.enter_async_context(another_instance(stack, name, logs[name]))
            for name in NAMES
        }

        async def split() -> bool:
            for name in NAMES:
                mine = assignments(logs[name])
                for topic in GROUPS[name]:
                    held = mine.get(topic, [])
                    if not held or not all(0 < len(p) < len(ALL) for p in held):
                        return False
            return True

        await wait_until(split, timeout=90, interval=0.5, what="every group split over two")
        for name in NAMES:
            mine = assignments(logs[name])
            shared[name] = {t: (len(ALL - mine[t][0]), len(mine[t][0])) for t in GROUPS[name]}

        keys_urls = [SERVICE["keys"].url, second["keys"][0]]
        async with (
            under_load(stack, producer, "faults-scale") as loaded,
            loaded.account.client(keys_urls[1]) as on_second,
        ):
            account = loaded.account
            # Verification and revocation through either keys process, seen by both.
            verified = 0
            for changer, change in ((0, "disable"), (1, "revoke")):
                created = await on_second.post("/v1/keys", json={"name": f"both {change}"})
                secret, key_id = created.json()["key"], created.json()["id"]
                cached_since = time.monotonic()
                for url in keys_urls:
                    assert await _code(url, account, secret) == "valid"
                    verified += 1
                async with account.client(keys_urls[changer]) as client:
                    path = f"/v1/keys/{key_id}"
                    done = await (
                        client.post(f"{path}/disable", json={"reason": "scale-out"})
                        if change == "disable"
                        else client.delete(path)
                    )
                assert done.status_code == 200, done.text
                await _refused_by_both(keys_urls, account, secret, f"{change}d", cached_since)
                verified += 2

            # SIGKILL the second process of each service: the first takes its partitions.
            killed_at = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
            for _, process in second.values():
                process.kill()
                await _wait_dead(process)

            async def taken_over() -> bool:
                for name in NAMES:
                    held = assignments(SERVICE[name].process.log_file, since=killed_at)
                    if any(not held.get(t) or any(p != ALL for p in held[t]) for t in GROUPS[name]):
                        return False
                return True

            await wait_until(taken_over, timeout=90, interval=0.5, what="the partitions taken over")
            await loaded.load.progressed(20)
        assert all(SERVICE[name].process.running() for name in NAMES)
    result = loaded.result
    assert result is not None

    report(
        "scale-out",
        10,
        "two processes of each service; one of each killed",
        "partitions (first process, second process): "
        + "; ".join(
            f"{n}: " + ", ".join(f"{t} {a}+{b}" for t, (a, b) in shared[n].items()) for n in NAMES
        )
        + f"; after SIGKILL of the second processes the first hold all; verify/revoke through"
        f" both keys processes {verified} checks alike; {result.line()}",
        shared=shared,
        verified=verified,
        **vars(result),
    )
    result.assert_clean()


async def _wait_dead(process: subprocess.Popen[bytes]) -> None:
    async def dead() -> bool:
        return process.poll() is not None

    await wait_until(dead, timeout=10, what="the killed process gone")
