"""The fault suite's common parts: its scale knob, its figures, the services' processes,
a steady load, and the reconciliation that proves nothing was lost or counted twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.errors import KafkaError
from hypothesis import HealthCheck, Phase, settings
from pydantic import ValidationError

from contracts import (
    KEYS_EVENTS,
    parse_event,
)
from devstack import paths
from devstack import stack as local_stack
from servicekit.kafka import KafkaProducer
from tests.support.accounts import Account, new_account
from tests.support.kafka import Record, TopicTail
from tests.support.keys_processes import contending_command, send
from tests.support.processes import SERVICE
from tests.support.stack import Stack
from tests.support.usage import now_minute, publish, steady
from tests.support.wait import wait_until

FULL = os.environ.get("FAULTS_FULL") == "1"
"""`FAULTS_FULL=1`: the long form (the issue's rounds); otherwise the same checks, fewer."""
RESULTS = Path(__file__).resolve().parents[2] / "test-results" / "faults"
NAMES = tuple(SERVICE)
APIS = tuple(name for name in NAMES if SERVICE[name].serves_api)
"""The processes with an API (usage's limit counter answers only its probes)."""


def scale(short: int, full: int) -> int:
    return full if FULL else short


MARKS = [pytest.mark.stack, pytest.mark.faults, pytest.mark.timeout(scale(300, 1500))]
"""Every fault test's marks: its long form may take longer than the suite's 300 s."""


def generating(examples: int) -> settings:
    """Hypothesis as a generator of hostile input: `examples` fresh ones, no shrinking, no
    example database, no health checks (the inputs are slow to use, not to make)."""
    return settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


# --- figures ----------------------------------------------------------------------------
@dataclass
class Figures:
    point: int
    title: str
    summary: str
    values: dict[str, Any] = field(default_factory=dict)


def report(key: str, point: int, title: str, summary: str, **values: Any) -> None:
    """Print a test's figures and keep them (test-results/faults/<key>.json) for the
    session's RELIABILITY report."""
    figures = Figures(point, title, summary, values)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{key}.json").write_text(json.dumps(asdict(figures), indent=2, default=str))
    print(f"\n[{key}] {summary}")


def fault_log(name: str) -> Path:
    """A log file for a process the suite spawns, beside the stack's own logs, so the
    secrets scan (point 7) reads it too."""
    paths.ensure_dirs()
    return paths.LOGS / f"faults-{name}-{uuid.uuid4().hex[:6]}.log"


# --- the stack's own processes ----------------------------------------------------------
def pids() -> dict[str, int | None]:
    return {name: SERVICE[name].process.pid() for name in NAMES}


async def ensure_stack_up() -> None:
    """Whatever a scenario stopped or killed runs again and answers: the scenarios after
    it need the whole stack."""
    ends = local_stack.endpoints_from_env()
    await local_stack.up_infra(ends)
    await local_stack.up_services(ends)


# --- a steady load ----------------------------------------------------------------------
class Load:
    """Keys created over HTTP, commands on `keys.commands` and usage records on
    `usage.records`, for one account, until stopped; each step retried through outages
    (a usage record is re-sent with the same record_id, so it can count only once)."""

    def __init__(self, producer: KafkaProducer, account: Account):
        self.producer = producer
        self.account = account
        self.key_ids: list[str] = []
        self.records: set[uuid.UUID] = set()
        self.commands = 0
        self.command_ids: list[uuid.UUID] = []
        self.steps = 0
        self.statuses: Counter[int] = Counter()
        self.transport_errors = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._rng = random.Random(account.id)  # noqa: S311 - a load's choices, not a secret

    async def __aenter__(self) -> Load:
        self._tasks = [
            asyncio.create_task(self._create_keys()),
            asyncio.create_task(self._run(self._command)),
            asyncio.create_task(self._run(self._usage)),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop: the key creations at once (the event store is the judge of what they
        did), the messages after the one in flight (a record is counted once acknowledged)."""
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        if tasks:
            tasks[0].cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            failed = [r for r in results if isinstance(r, Exception)]
            assert not failed, failed

    async def progressed(self, steps: int, timeout: float = 120.0) -> None:
        """Wait until the load has made `steps` more steps (it may be stalled by a fault)."""
        target = self.steps + steps

        async def made() -> bool:
            for task in self._tasks:
                if task.done() and task.exception() is not None:
                    raise AssertionError("the load failed") from task.exception()
            return self.steps >= target

        await wait_until(made, timeout=timeout, interval=0.05, what=f"{steps} steps of load")

    async def _run(self, step: Callable[[], Awaitable[None]]) -> None:
        while not self._stop.is_set():
            await step()
            await asyncio.sleep(0.1)

    async def _retry(self, what: str, attempt: Any) -> Any:
        """Retry `attempt()` through transport errors until it answers (at most 300s)."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                return await attempt()
            except (httpx.TransportError, KafkaError, OSError):
                self.transport_errors += 1
                await asyncio.sleep(0.2)
        raise AssertionError(f"load: {what} did not succeed within 300s")

    async def _create_keys(self) -> None:
        """One key after the other (it waits out outages), a few a second."""
        async with self.account.client() as client:
            while not self._stop.is_set():
                try:
                    response = await client.post("/v1/keys", json={"name": "load"})
                except httpx.TransportError:
                    self.transport_errors += 1
                    await asyncio.sleep(0.2)
                    continue
                self.statuses[response.status_code] += 1
                if response.status_code == 201:
                    self.key_ids.append(response.json()["id"])
                else:
                    assert response.status_code == 503, response.text
                await asyncio.sleep(0.05 if len(self.key_ids) < 20 else 0.3)

    async def _command(self) -> None:
        if not self.key_ids:
            return
        key_id = uuid.UUID(self._rng.choice(self.key_ids))
        # A random kind (i % 3), and a name never used before (i grows with the count).
        i = 3 * self.commands + self._rng.randrange(3)
        command = contending_command(self.account.id, key_id, i)
        await self._retry("a command", lambda: send(self.producer, command))
        self.commands += 1
        self.command_ids.append(command.command_id)

    async def _usage(self) -> None:
        if not self.key_ids:
            return
        key_id = self._rng.choice(self.key_ids)
        batch = steady(key_id, self.account.id, now_minute(), minutes=1, per_minute=10)
        await self._retry("usage records", lambda: publish(self.producer, batch))
        self.records.update(r.record_id for r in batch)
        self.steps += 1


# --- reconciliation ---------------------------------------------------------------------
@dataclass
class Reconciliation:
    stored: int
    on_topic: int
    audited: int
    lost_on_topic: int
    lost_in_audit: int
    unknown_on_topic: int
    redelivered_on_topic: int
    audited_twice: int
    records_published: int
    records_counted: int

    @property
    def lost(self) -> int:
        return (
            self.lost_on_topic
            + self.lost_in_audit
            + max(0, self.records_published - self.records_counted)
        )

    @property
    def duplicated(self) -> int:
        return self.audited_twice + max(0, self.records_counted - self.records_published)

    def line(self) -> str:
        return (
            f"events stored {self.stored}, on keys.events {self.on_topic}, audited {self.audited};"
            f" usage records published {self.records_published}, counted {self.records_counted};"
            f" lost {self.lost}, duplicated {self.duplicated}"
            f" (redelivered on the topic, deduplicated downstream: {self.redelivered_on_topic})"
        )

    def assert_clean(self) -> None:
        assert self.stored > 0 and self.records_published > 0, self
        assert (self.lost, self.duplicated, self.unknown_on_topic) == (0, 0, 0), self


def _event_ids(records: list[Record], accounts: set[str]) -> Counter[uuid.UUID]:
    found: Counter[uuid.UUID] = Counter()
    for record in records:
        try:
            event = parse_event(record.value or b"")
        except ValidationError:
            continue  # other scenarios' poison
        if event.account_id in accounts:
            found[event.event_id] += 1
    return found


async def reconcile(
    stack: Stack, tail: TopicTail, load: Load, timeout: float = 180
) -> Reconciliation:
    """Wait until the platform has drained, then compare store, topic, audit and usage
    for the load's account. `tail` must have been opened before the account was created.
    Connections of its own: the databases may have restarted under the test's."""
    accounts = {load.account.id}
    conns = {n: await asyncpg.connect(stack.database(n)) for n in ("keys", "audit", "usage")}
    try:

        async def stored_events() -> set[uuid.UUID]:
            rows = await conns["keys"].fetch(
                "SELECT event_id FROM events WHERE account_id = ANY($1::text[])", list(accounts)
            )
            return {r["event_id"] for r in rows}

        async def answered() -> bool:
            found = await conns["keys"].fetchval(
                "SELECT count(*) FROM processed_commands WHERE command_id = ANY($1::uuid[])",
                load.command_ids,
            )
            return bool(found == len(set(load.command_ids)))

        # The commands sent last may still be in the keys service's hands: the store is
        # read once each has its answer (one never answered leaves its events unknown).
        with contextlib.suppress(AssertionError):
            await wait_until(answered, timeout=timeout, interval=0.2, what="every command answered")
        stored = await stored_events()
        deadline = time.monotonic() + timeout  # then what is missing counts as lost

        records: list[Record] = []

        def complete(new: list[Record]) -> bool:
            seen = set(_event_ids(records + new, accounts))
            return time.monotonic() > deadline or stored <= seen

        records += await tail.collect(complete, timeout=timeout + 30)
        records += await tail.settle(quiet=2.0)
        # A key creation the load gave up on when it stopped may have been stored since
        # (the service finishes a request whose client left): the store is read again.
        stored = await stored_events()
        records += await tail.collect(complete, timeout=timeout + 30)
        topic = _event_ids(records, accounts)

        async def audit_rows() -> Counter[str]:
            found = await conns["audit"].fetch(
                "SELECT source_id, count(*) AS n FROM audit_records"
                " WHERE account_id = ANY($1::text[]) AND source_id LIKE 'event:%'"
                " GROUP BY source_id",
                list(accounts),
            )
            return Counter({r["source_id"]: r["n"] for r in found})

        wanted = {f"event:{e}" for e in stored}
        key_ids = [uuid.UUID(k) for k in load.key_ids]
        published = len(load.records)

        async def counted() -> int:
            total = await conns["usage"].fetchval(
                "SELECT coalesce(sum(requests), 0) FROM rollups WHERE key_id = ANY($1::uuid[])",
                key_ids,
            )
            return int(total)

        async def drained() -> bool:
            return wanted <= set(await audit_rows()) and await counted() >= published

        with contextlib.suppress(AssertionError):
            await wait_until(drained, timeout=timeout, interval=0.5, what="audit and usage")
        audit = await audit_rows()
        return Reconciliation(
            stored=len(stored),
            on_topic=len(set(topic)),
            audited=len(audit),
            lost_on_topic=len(stored - set(topic)),
            lost_in_audit=len(wanted - set(audit)),
            unknown_on_topic=len(set(topic) - stored),
            redelivered_on_topic=sum(n - 1 for n in topic.values()),
            audited_twice=sum(n - 1 for n in audit.values()),
            records_published=published,
            records_counted=await counted(),
        )
    finally:
        for conn in conns.values():
            await conn.close()


@dataclass
class Loaded:
    account: Account
    load: Load
    result: Reconciliation | None = None
    """Set once the load has stopped and the platform drained."""


@contextlib.asynccontextmanager
async def under_load(stack: Stack, producer: KafkaProducer, prefix: str) -> AsyncIterator[Loaded]:
    """A fresh account under a steady load while the body does its damage. Whatever the
    body stopped or killed runs again before the load stops (even when the body fails);
    then the platform is drained and reconciled into `Loaded.result`."""
    async with TopicTail(stack.kafka, KEYS_EVENTS) as tail:
        account = await new_account(stack, prefix)
        loaded = Loaded(account, Load(producer, account))
        async with loaded.load:
            try:
                await loaded.load.progressed(20)
                yield loaded
            finally:
                await ensure_stack_up()
        loaded.result = await reconcile(stack, tail, loaded.load)
