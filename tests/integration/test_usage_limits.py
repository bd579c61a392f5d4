"""The usage service counts each key against its limits and publishes its state to
usage.limits: crossing, budgets, raised limits, re-sends, refusals, a SIGKILL mid-burst,
and one audit record per change. A usage process of the test's own (database, groups,
records, key events and limits topics); key events are published as the keys service
writes them."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from contracts import (
    USAGE_LIMITS,
    Actor,
    KeyCreated,
    KeyCreatedData,
    KeyDisabled,
    KeyDisabledData,
    KeyUpdated,
    KeyUpdatedData,
    LimitState,
    TokenBudget,
    UsageRecord,
    window_bounds,
)
from servicekit.kafka import KafkaProducer
from services.usage.adapters import directory_store
from services.usage.domain.keys import fold
from tests.support.accounts import Account
from tests.support.audit import audit_get
from tests.support.kafka import Record, TopicTail
from tests.support.processes import free_port, spawn
from tests.support.stack import Stack
from tests.support.usage import (
    UsageInstance,
    alerts_of,
    known_to_usage,
    publish,
    record,
    scratch_topic,
    usage_instance,
)
from tests.support.wait import wait_until

pytestmark = pytest.mark.stack
ADMIN = Actor(type="user", id="alice@example.com")


@dataclass
class LimitsStack:
    usage: UsageInstance
    records: str
    events: str
    states: TopicTail
    seen: list[Record]

    async def create_key(self, producer: KafkaProducer, account_id: str, **limits: Any) -> str:
        event = KeyCreated(
            event_id=uuid.uuid4(),
            key_id=uuid.uuid4(),
            account_id=account_id,
            stream_version=1,
            position=1,
            occurred_at=datetime.now(UTC),
            actor=ADMIN,
            data=KeyCreatedData(name="limited", prefix="ig_live_Ab3d", **limits),
        )
        await producer.send(
            self.events, event.model_dump_json().encode(), str(event.key_id).encode()
        )
        conn = await asyncpg.connect(self.usage.database)
        try:
            await known_to_usage(conn, str(event.key_id))
        finally:
            await conn.close()
        return str(event.key_id)

    async def state(self, key_id: str, expected: Any, timeout: float = 60.0) -> LimitState:
        """The key's first state read from now on (or before) that satisfies `expected`."""

        def found() -> LimitState | None:
            for message in self.seen:
                if message.key and message.key.decode() == key_id:
                    state = LimitState.model_validate_json(message.value or b"")
                    if expected(state):
                        return state
            return None

        def arrived(records: list[Record]) -> bool:
            self.seen.extend(records)
            records.clear()
            return found() is not None

        await self.states.collect(arrived, timeout=timeout)
        state = found()
        assert state is not None
        return state

    def states_of(self, key_id: str) -> list[LimitState]:
        return [
            LimitState.model_validate_json(m.value or b"")
            for m in self.seen
            if m.key and m.key.decode() == key_id
        ]


@contextlib.asynccontextmanager
async def limits_stack(
    stack: Stack, log: Path, limits_topic: str | None = None, **settings: str
) -> AsyncIterator[LimitsStack]:
    async with (
        scratch_topic(stack.kafka, "test.usage.records") as records,
        scratch_topic(stack.kafka, "test.keys.events") as events,
        scratch_topic(stack.kafka, "test.usage.limits") as scratch_limits,
    ):
        topic = limits_topic or scratch_limits
        opened = await wait_until(
            lambda: _tail(stack.kafka, topic), timeout=60, what=f"topic {topic} to be known"
        )
        assert opened is not None
        states: TopicTail = opened
        async with (
            states,
            usage_instance(
                stack,
                log,
                records,
                USAGE_KEYS_EVENTS_TOPIC=events,
                USAGE_LIMITS_TOPIC=topic,
                **settings,
            ) as usage,
        ):
            yield LimitsStack(usage, records, events, states, [])


async def _tail(bootstrap: str, topic: str) -> TopicTail | None:
    """A tail of a topic just created, once the broker's metadata has it."""
    tail = TopicTail(bootstrap, topic)
    try:
        await tail.__aenter__()
    except AssertionError:
        return None
    return tail


def roomy_now() -> datetime:
    """An event time whose minute has 20 s or more left (and whose hour is not the last
    minute of it): a test sees the limited state before its window ends. Near the end of a
    minute that is the next minute, as a gateway's clock a little ahead would give."""
    at = datetime.now(UTC)
    if at.second >= 40:
        at = at.replace(second=1, microsecond=0) + timedelta(minutes=1)
    if at.minute == 59:
        at = at.replace(minute=0, second=1, microsecond=0) + timedelta(hours=1)
    return at


def key_updated(key_id: str, before: dict[str, Any], after: dict[str, Any]) -> KeyUpdated:
    """The key's second event (of account acme): its limits changed from `before`."""
    return KeyUpdated(
        event_id=uuid.uuid4(),
        key_id=uuid.UUID(key_id),
        account_id="acme",
        stream_version=2,
        position=2,
        occurred_at=datetime.now(UTC),
        actor=ADMIN,
        data=KeyUpdatedData(before=before, after=after),
    )


def tokens(key_id: str, account_id: str, at: datetime, total: int) -> UsageRecord:
    return record(key_id, account_id, at).model_copy(
        update={"tokens_in": total // 4, "tokens_out": total - total // 4}
    )


async def test_crossing_a_rate_limit_publishes_rate_limited_until_the_window_ends(
    stack: Stack, producer: KafkaProducer, tmp_path: Path
) -> None:
    async with limits_stack(stack, tmp_path / "usage.log") as limits:
        key = await limits.create_key(producer, "acme", rate_limit_per_hour=100)
        at = roomy_now()
        await publish(producer, [record(key, "acme", at) for _ in range(99)], limits.records)
        clear = await limits.state(key, lambda s: s.windows["rate_limit_per_hour"].counted == 99)
        assert (clear.state, clear.limit_name, clear.until) == ("clear", None, None)
        _, hour_end = window_bounds("rate_limit_per_hour", None, at)
        assert clear.windows["rate_limit_per_hour"].reset_at == hour_end
        await publish(producer, [record(key, "acme", at)], limits.records)  # the 100th
        limited = await limits.state(key, lambda s: s.state != "clear")
        assert (limited.state, limited.limit_name, limited.until) == (
            "rate_limited",
            "rate_limit_per_hour",
            hour_end,
        )
        assert (limited.counted, limited.limit) == (100, 100)
        assert limited.as_of == at


async def test_a_minute_limit_clears_when_its_window_ends(
    stack: Stack, producer: KafkaProducer, tmp_path: Path
) -> None:
    async with limits_stack(stack, tmp_path / "usage.log") as limits:
        key = await limits.create_key(producer, "acme", rate_limit_per_minute=10)
        at = roomy_now()
        await publish(producer, [record(key, "acme", at) for _ in range(15)], limits.records)
        limited = await limits.state(key, lambda s: s.state == "rate_limited")
        _, minute_end = window_bounds("rate_limit_per_minute", None, at)
        assert limited.until == minute_end and limited.limit == 10
        cleared = await limits.state(
            key, lambda s: s.state == "clear" and s.as_of >= minute_end, timeout=90
        )
        assert cleared.windows["rate_limit_per_minute"].counted == 0


async def test_an_exhausted_token_budget_is_cleared_at_once_when_raised(
    stack: Stack, producer: KafkaProducer, tmp_path: Path
) -> None:
    async with limits_stack(stack, tmp_path / "usage.log") as limits:
        key = await limits.create_key(
            producer, "acme", token_budget=TokenBudget(tokens=10_000, period="day")
        )
        at = roomy_now()
        await publish(producer, [tokens(key, "acme", at, 1_000) for _ in range(12)], limits.records)
        exhausted = await limits.state(key, lambda s: s.state != "clear")
        _, day_end = window_bounds("token_budget", "day", at)
        assert (exhausted.state, exhausted.limit_name, exhausted.until, exhausted.limit) == (
            "budget_exhausted",
            "token_budget",
            day_end,
            10_000,
        )
        assert exhausted.counted is not None and 10_000 <= exhausted.counted <= 12_000
        raised = key_updated(
            key,
            {"token_budget": TokenBudget(tokens=10_000, period="day")},
            {"token_budget": TokenBudget(tokens=20_000, period="day")},
        )
        await producer.send(limits.events, raised.model_dump_json().encode(), key.encode())
        cleared = await limits.state(
            key, lambda s: s.state == "clear" and s.windows["token_budget"].limit == 20_000
        )
        budget = cleared.windows["token_budget"]
        assert (budget.counted, budget.limit, budget.reset_at) == (12_000, 20_000, day_end)


async def test_re_sent_records_and_refusals_are_not_counted(
    stack: Stack, producer: KafkaProducer, tmp_path: Path
) -> None:
    async with limits_stack(stack, tmp_path / "usage.log") as limits:
        key = await limits.create_key(producer, "acme", rate_limit_per_day=1_000)
        at = roomy_now()
        served = [record(key, "acme", at) for _ in range(10)]
        refused = [record(key, "acme", at, status=s) for s in (401, 403, 429)]
        await publish(producer, served + served[:5] + refused, limits.records)
        await publish(producer, served[5:], limits.records)  # later re-sends, other batches
        marker = record(key, "acme", at)
        await publish(producer, [marker], limits.records)
        counted = await limits.state(key, lambda s: s.windows["rate_limit_per_day"].counted >= 11)
        assert counted.windows["rate_limit_per_day"].counted == 11


async def test_killed_mid_burst_the_service_publishes_consistent_states(
    stack: Stack, producer: KafkaProducer, tmp_path: Path
) -> None:
    async with limits_stack(
        stack, tmp_path / "usage.log", USAGE_LIMITS_BATCH_MAX_RECORDS="500"
    ) as limits:
        by_minute = [
            await limits.create_key(producer, "acme", rate_limit_per_minute=300) for _ in range(5)
        ]
        by_hour = [
            await limits.create_key(producer, "acme", rate_limit_per_hour=300) for _ in range(5)
        ]
        at = roomy_now()
        keys = by_minute + by_hour
        burst = [record(keys[i % len(keys)], "acme", at) for i in range(8_000)]
        conn = await asyncpg.connect(limits.usage.database)
        try:
            sending = asyncio.create_task(publish(producer, burst, limits.records))

            async def midway() -> bool:
                done: int = await conn.fetchval(
                    "SELECT coalesce(sum(next_offset), 0) FROM limit_offsets"
                )
                return 500 <= done < len(burst)

            await wait_until(midway, timeout=60, interval=0.02, what="counting to be midway")
            limits.usage.kill()  # SIGKILL: the batch in hand is neither stored nor committed
            await sending
            await publish(producer, burst[:300], limits.records)  # a gateway re-sends some
            limits.usage.restart()
            await limits.usage.wait_ready()
            markers = [record(key, "acme", at) for key in keys]
            await publish(producer, markers, limits.records)

            async def all_counted() -> dict[str, int] | None:
                rows = await conn.fetch("SELECT key_id::text, day_requests FROM limit_windows")
                counts = {r[0]: r[1] for r in rows}
                return counts if sum(counts.values()) >= len(burst) + len(markers) else None

            counts = await wait_until(all_counted, timeout=120, what="the burst to be counted")
            assert counts == dict.fromkeys(keys, 801)  # each record once, re-sends not
            _, hour_end = window_bounds("rate_limit_per_hour", None, at)
            for key in by_hour:  # limited once crossed, and not cleared by the restart
                await limits.state(key, lambda s: s.state == "rate_limited")
                last = limits.states_of(key)[-1]
                assert (last.state, last.limit_name, last.until, last.limit) == (
                    "rate_limited",
                    "rate_limit_per_hour",
                    hour_end,
                    300,
                )
                assert last.counted is not None and last.counted >= 300
            _, minute_end = window_bounds("rate_limit_per_minute", None, at)
            for key in by_minute:  # clear once the minute is over, whatever it counted
                await limits.state(
                    key, lambda s: s.state == "clear" and s.as_of >= minute_end, timeout=90
                )
        finally:
            await conn.close()


async def test_audit_records_one_entry_per_change_of_a_keys_limit_state(
    stack: Stack, producer: KafkaProducer, account: Account, tmp_path: Path
) -> None:
    async with limits_stack(stack, tmp_path / "usage.log", limits_topic=USAGE_LIMITS) as limits:
        key = await limits.create_key(producer, account.id, rate_limit_per_minute=5)
        at = roomy_now()
        for n in range(1, 4):  # counted on: the clear key's state is sent again

            def counted(state: LimitState, n: int = n) -> bool:
                return state.windows["rate_limit_per_minute"].counted == n

            await publish(producer, [record(key, account.id, at)], limits.records)
            await limits.state(key, counted)
        await publish(producer, [record(key, account.id, at) for _ in range(10)], limits.records)
        await limits.state(key, lambda s: s.state == "clear" and s.as_of > at, timeout=90)
        async with account.client(stack.url("audit")) as audit:

            async def recorded() -> list[str] | None:
                response = await audit_get(audit, "/v1/audit/events", key_id=key)
                actions = [item["action"] for item in response.json()["items"]]
                return actions if len(actions) >= 2 else None

            actions = await wait_until(recorded, timeout=60, what="the limit changes audited")
            assert actions == ["limit.cleared", "limit.rate_limited"]  # newest first
        assert len([s for s in limits.states_of(key) if s.state != "clear"]) >= 1


async def test_a_limit_lowered_while_the_counter_process_is_down_applies_when_it_returns(
    stack: Stack, producer: KafkaProducer, tmp_path: Path
) -> None:
    """Deployed as `make up` does: an ingest process and a limit counter process. The
    ingest stores the key's new limit while the counter is down; the counter, back, still
    re-evaluates the key at once (its own read model: limit_directory), no record needed."""
    async with limits_stack(stack, tmp_path / "ingest.log", USAGE_ROLE="ingest") as limits:
        port = free_port()
        env = {**limits.usage.env, "USAGE_ROLE": "limits", "USAGE_HTTP_PORT": str(port)}
        log = tmp_path / "counter.log"
        counter = UsageInstance(
            f"http://127.0.0.1:{port}", limits.usage.database, env, log, spawn("usage", env, log)
        )
        try:
            await counter.wait_ready()
            key = await limits.create_key(producer, "acme", rate_limit_per_hour=10)
            at = roomy_now()
            await publish(producer, [record(key, "acme", at) for _ in range(5)], limits.records)
            counted = await limits.state(
                key, lambda s: s.windows["rate_limit_per_hour"].counted == 5
            )
            assert counted.state == "clear"
            await counter.stop()

            lowered = key_updated(key, {"rate_limit_per_hour": 10}, {"rate_limit_per_hour": 3})
            await producer.send(limits.events, lowered.model_dump_json().encode(), key.encode())
            conn = await asyncpg.connect(limits.usage.database)
            try:

                async def ingest_has_it() -> bool:
                    version: int | None = await conn.fetchval(
                        "SELECT version FROM key_directory WHERE key_id = $1", uuid.UUID(key)
                    )
                    return version == 2

                await wait_until(ingest_has_it, timeout=60, what="the ingest to store the change")
            finally:
                await conn.close()

            counter.restart()
            await counter.wait_ready()
            limited = await limits.state(key, lambda s: s.state != "clear")
            assert (limited.state, limited.limit_name, limited.limit, limited.counted) == (
                "rate_limited",
                "rate_limit_per_hour",
                3,
                5,
            )
        finally:
            await counter.stop()


async def test_a_limit_that_another_counter_process_stored_is_enforced_here(
    stack: Stack, producer: KafkaProducer, tmp_path: Path
) -> None:
    """Counter processes share the partitions of keys.events out between them: the event
    that sets a key's limit may be read by another process than the one counting the key's
    records. That process stores the key's row; this one takes it from the directory they
    share within about a second and judges the key by it."""
    async with limits_stack(stack, tmp_path / "usage.log") as limits:
        key = await limits.create_key(producer, "acme")  # no limits yet
        at = roomy_now()
        await publish(producer, [record(key, "acme", at) for _ in range(5)], limits.records)
        conn = await asyncpg.connect(limits.usage.database)
        try:

            async def counted() -> bool:
                requests = await conn.fetchval(
                    "SELECT hour_requests FROM limit_windows WHERE key_id = $1", uuid.UUID(key)
                )
                return bool(requests == 5)

            await wait_until(counted, timeout=60, what="the five records counted")
            # What the other process stores on reading the key's KeyUpdated, which this
            # process never reads (it is not on the topic it reads).
            table = directory_store.LIMIT_DIRECTORY
            (stored,) = await directory_store.load_keys(conn, [key], table)
            update = key_updated(key, {"rate_limit_per_hour": None}, {"rate_limit_per_hour": 5})
            limited_key = fold(stored, update)
            assert limited_key is not None
            await directory_store.save_many(conn, [limited_key], table)
        finally:
            await conn.close()
        limited = await limits.state(key, lambda s: s.state != "clear")
        assert (limited.state, limited.limit_name) == ("rate_limited", "rate_limit_per_hour")
        assert (limited.counted, limited.limit) == (5, 5)


async def test_a_key_another_ingest_process_stored_as_disabled_is_judged_so_here(
    stack: Stack, producer: KafkaProducer, tmp_path: Path
) -> None:
    """The same for the analytic ingest: a key disabled by an event that another ingest
    process read is known here as disabled, and a request made with it afterwards is
    the `disabled_key_in_use` it is."""
    async with limits_stack(stack, tmp_path / "usage.log") as limits:
        key = await limits.create_key(producer, "acme")
        conn = await asyncpg.connect(limits.usage.database)
        try:
            (stored,) = await directory_store.load_keys(conn, [key])
            disabled = fold(
                stored,
                KeyDisabled(
                    event_id=uuid.uuid4(),
                    key_id=uuid.UUID(key),
                    account_id="acme",
                    stream_version=2,
                    position=2,
                    occurred_at=datetime.now(UTC) - timedelta(minutes=5),
                    actor=ADMIN,
                    data=KeyDisabledData(reason="leaked in a public repository"),
                ),
            )
            assert disabled is not None
            await directory_store.save_many(conn, [disabled])

            async def raised() -> list[tuple[str, str]]:
                # A request each time: the ones this process judged before it took the
                # stored row were, as far as it knew, an active key's.
                await publish(producer, [record(key, "acme", datetime.now(UTC))], limits.records)
                return [a for a in await alerts_of(conn, key) if a[0] == "disabled_key_in_use"]

            found = await wait_until(raised, timeout=60, interval=0.5, what="the alert")
        finally:
            await conn.close()
        assert found == [("disabled_key_in_use", "critical")]
