"""keys_commands: command-to-event latency at a steady 500 commands/s.

A bench account gets a pool of keys (created in this process through the use cases).
The benchmark starts one keys process of its own, so that the consumer group `keys` has a
member it controls (the stack's own keys process, when it runs, is in the group too and
takes its share of the partitions: `params.keys_group_members` says how many there were).
After a warm-up that proves the group consumes, and a short phase at `LOW_RATE` (a rate
it keeps up with: the latency of one command with no queue in front of it), it publishes
commands to `keys.commands` at a steady 500/s, open loop (each send at its time, whatever
came back), keyed by key_id as INTERFACE.md says: a mix of UpdateKey (rename), DisableKey
and EnableKey, in an order that is valid for each key (update -> disable -> enable, round
robin over the pool), so every command is accepted and yields exactly one event.

An independent reader of `keys.events` and `keys.command-results` in this process matches
each event to its command by `causation_id`; the figure is the time from just before the
send of the command to the read of its event, on one clock. Breakdown in params, on the
wall clock: send -> the event's `occurred_at` (set when the keys process starts applying
the command: the consumer's pick-up) and `occurred_at` -> event read (transaction, commit,
publisher, broker, reader); and, from the CreateTime the keys process's producer stamps on
each record, `occurred_at` -> the result's send (the batch's transaction), `occurred_at`
-> the event's send (the transaction, the publisher's wake-up and its round) and the
event's send -> its read (one broker hop with acks=all, and this reader).

The baseline in the same run: the same producer and the same kind of reader on a scratch
topic, at the same rate: one bare broker hop, the floor of each of the two hops a command
takes (keys.commands in, keys.events out).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from bench import keys_support as ks
from bench.harness import LOAD_KEPT, BenchContext, Figure, benchmark
from bench.scratch_topic import scratch_topic
from contracts import KEYS_COMMAND_RESULTS, KEYS_COMMANDS, KEYS_EVENTS, KeyAttributes
from services.keys.app import use_cases
from services.keys.app.unit_of_work import KeysTransaction, KeysUnitOfWork

RATE: Final = 500.0
LOW_RATE: Final = 50.0
"""A rate the service keeps up with: the latency of one command without a queue."""
POOL_KEYS: Final = 200
WARMUP_COMMANDS: Final = 100
DRAIN_TIMEOUT_S: Final = 180.0
RESULT_GRACE_S: Final = 10.0
PRODUCER_OPTIONS: Final[dict[str, Any]] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 5,
    "max_batch_size": 256 * 1024,
    "request_timeout_ms": 15_000,
}
"""What servicekit.kafka.KafkaProducer uses: the settings of every sender on the platform."""
CYCLE: Final = ("UpdateKey", "DisableKey", "EnableKey")


@dataclass
class Sent:
    at: float
    wall: float
    event_at: float | None = None
    event_occurred: float | None = None
    event_sent: float | None = None
    """Wall time the keys process handed the event to its producer (the record's CreateTime)."""
    result_at: float | None = None
    result_sent: float | None = None
    """Wall time the keys process handed the result to its producer (CreateTime)."""
    status: str | None = None


@dataclass
class Tracker:
    account_id: str
    sent: dict[str, Sent] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_record(self, record: Any, read_at: float) -> None:
        body = orjson.loads(record.value)
        if record.topic == KEYS_EVENTS:
            sent = self.sent.get(body.get("causation_id") or "")
            if sent is not None and sent.event_at is None:
                sent.event_at = read_at
                sent.event_occurred = datetime.fromisoformat(body["occurred_at"]).timestamp()
                sent.event_sent = record.timestamp / 1000
                self.changed.set()
        else:
            sent = self.sent.get(body.get("command_id") or "")
            if sent is not None and sent.result_at is None:
                sent.result_at = read_at
                sent.result_sent = record.timestamp / 1000
                sent.status = body.get("status")
                self.changed.set()

    async def wait_all(self, ids: Sequence[str], timeout: float) -> int:
        """Wait until every command of `ids` has its event (then its result, for a few more
        seconds at most); returns how many results are still missing."""
        deadline = time.perf_counter() + timeout
        results_deadline: float | None = None
        while True:
            if any(self.sent[i].status == "rejected" for i in ids):
                raise RuntimeError("a command was rejected: the mix must be valid for each key")
            no_event = sum(1 for i in ids if self.sent[i].event_at is None)
            no_result = sum(1 for i in ids if self.sent[i].result_at is None)
            now = time.perf_counter()
            if no_event == 0:
                results_deadline = results_deadline or now + RESULT_GRACE_S
                if no_result == 0 or now > results_deadline:
                    return no_result
            elif now > deadline:
                raise TimeoutError(f"{no_event} of {len(ids)} commands have no event in time")
            self.changed.clear()
            await asyncio.wait([asyncio.create_task(self.changed.wait())], timeout=0.5)


@benchmark("keys_commands")
async def keys_commands(ctx: BenchContext) -> list[Figure]:
    seconds = ctx.scale(20, 4)
    count = int(RATE * seconds)
    low_count = int(LOW_RATE * ctx.scale(10, 3))
    ctx.note(
        rate=RATE,
        commands=count,
        low_rate=LOW_RATE,
        low_rate_commands=low_count,
        pool_keys=POOL_KEYS,
        warmup_commands=WARMUP_COMMANDS,
        mix=list(CYCLE),
        producer={k: v for k, v in PRODUCER_OPTIONS.items() if k != "request_timeout_ms"},
        cpu_note="2 cores: producer, reader, keys processes, PostgreSQL and Kafka share them",
    )
    stack = ks.endpoints(ctx.bootstrap)
    floor = await _kafka_floor(ctx, count)
    with ks.workdir("keys-commands") as work:
        async with (
            ks.bench_account(stack, "commands", with_admin_key=False) as account,
            ks.keys_process(stack, work, "keys-commands"),
        ):
            key_ids = await _create_keys(stack, account.id)
            tracker = Tracker(account.id)
            topics = [KEYS_EVENTS, KEYS_COMMAND_RESULTS]
            producer = AIOKafkaProducer(bootstrap_servers=ctx.bootstrap, **PRODUCER_OPTIONS)
            await producer.start()
            try:
                async with ks.TopicTail(ctx.bootstrap, topics, tracker.on_record):
                    steps = [0] * len(key_ids)
                    warm = await _publish(producer, tracker, key_ids, steps, WARMUP_COMMANDS, 100)
                    missing = await tracker.wait_all(warm, DRAIN_TIMEOUT_S)
                    ctx.note(
                        keys_group_members=await ks.consumer_group_members(ctx.bootstrap, "keys")
                    )
                    low = await _publish(producer, tracker, key_ids, steps, low_count, LOW_RATE)
                    missing += await tracker.wait_all(low, DRAIN_TIMEOUT_S)
                    cpu = ks.CpuBudget.start(stack.keys_db_name)
                    began = time.perf_counter()
                    ids = await _publish(producer, tracker, key_ids, steps, count, RATE)
                    achieved = count / (time.perf_counter() - began)
                    missing += await tracker.wait_all(ids, DRAIN_TIMEOUT_S)
                    ctx.note(cpu_per_command=cpu.since(count), results_missing=missing)
            finally:
                await producer.stop()
    unloaded = [(tracker.sent[i].event_at or 0) - tracker.sent[i].at for i in low]
    ctx.note(breakdown_ms_at_low_rate=_breakdown(tracker, low))
    return [
        *_figures(ctx, tracker, ids, achieved, floor),
        Figure(
            f"command_p99_ms_at_{LOW_RATE:.0f}",
            ks.percentile(unloaded, 99) * 1000,
            "ms",
            better="lower",
            baseline=ks.percentile(floor, 99) * 1000,
            baseline_of="keys_commands/kafka_hop_p99_ms",
        ),
        Figure(
            f"command_p50_ms_at_{LOW_RATE:.0f}",
            ks.percentile(unloaded, 50) * 1000,
            "ms",
            better="lower",
        ),
    ]


def _breakdown(tracker: Tracker, ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """p50/p99 in ms of each leg (wall clock for the legs around `occurred_at`)."""
    sent = [tracker.sent[i] for i in ids]
    legs = {
        "send_to_processing_start": [(s.event_occurred or 0) - s.wall for s in sent],
        "processing_start_to_event_read": [t - occurred for t, occurred in _wall_reads(sent)],
        # From the records' CreateTime (the keys process's clock: the same machine's wall).
        "processing_start_to_result_send": [
            s.result_sent - (s.event_occurred or 0) for s in sent if s.result_sent is not None
        ],
        "processing_start_to_event_send": [
            (s.event_sent or 0) - (s.event_occurred or 0) for s in sent
        ],
        "event_send_to_event_read": [
            t - (s.event_sent or 0) for s, (t, _) in zip(sent, _wall_reads(sent), strict=True)
        ],
        "send_to_result_read": [s.result_at - s.at for s in sent if s.result_at is not None],
        "send_to_event_read": [(s.event_at or 0) - s.at for s in sent],
    }
    return {
        name: {
            "p50": round(ks.percentile(values, 50) * 1000, 2),
            "p99": round(ks.percentile(values, 99) * 1000, 2),
        }
        for name, values in legs.items()
    }


def _figures(
    ctx: BenchContext, tracker: Tracker, ids: Sequence[str], achieved: float, floor: list[float]
) -> list[Figure]:
    to_event = [(tracker.sent[i].event_at or 0) - tracker.sent[i].at for i in ids]
    ctx.note(
        achieved_rate=round(achieved, 1),
        breakdown_ms=_breakdown(tracker, ids),
        kafka_floor_ms={
            "p50": round(ks.percentile(floor, 50) * 1000, 2),
            "p99": round(ks.percentile(floor, 99) * 1000, 2),
        },
    )
    floor_p99 = ks.percentile(floor, 99) * 1000
    return [
        Figure(
            "command_p99_ms",
            ks.percentile(to_event, 99) * 1000,
            "ms",
            target=100,
            better="lower",
            baseline=floor_p99,
            baseline_of="keys_commands/kafka_hop_p99_ms",
        ),
        Figure("command_p95_ms", ks.percentile(to_event, 95) * 1000, "ms", better="lower"),
        Figure(
            "command_p50_ms",
            ks.percentile(to_event, 50) * 1000,
            "ms",
            better="lower",
            baseline=ks.percentile(floor, 50) * 1000,
            baseline_of="keys_commands/kafka_hop_p50_ms",
        ),
        Figure("command_max_ms", max(to_event) * 1000, "ms", better="lower"),
        Figure("commands_per_s", achieved, "cmd/s", target=RATE * LOAD_KEPT),
        Figure("kafka_hop_p50_ms", ks.percentile(floor, 50) * 1000, "ms", better="lower"),
        Figure("kafka_hop_p99_ms", floor_p99, "ms", better="lower"),
    ]


def _wall_reads(sent: Sequence[Sent]) -> list[tuple[float, float]]:
    """(wall time the event was read, its occurred_at): perf_counter mapped to the wall."""
    offset = time.time() - time.perf_counter()
    return [((s.event_at or 0) + offset, s.event_occurred or 0) for s in sent]


async def _publish(
    producer: Any,
    tracker: Tracker,
    key_ids: Sequence[uuid.UUID],
    steps: list[int],
    count: int,
    rate: float,
) -> list[str]:
    """Send `count` commands at `rate`/s, open loop; returns their command ids."""
    loop = asyncio.get_running_loop()
    ids: list[str] = []
    futures = []
    began = loop.time()
    for i in range(count):
        await asyncio.sleep(max(0.0, began + i / rate - loop.time()))
        k = len(ids) % len(key_ids)
        command_type = CYCLE[steps[k] % len(CYCLE)]
        steps[k] += 1
        command_id = str(uuid.uuid4())
        value = _command(command_id, command_type, tracker.account_id, key_ids[k])
        tracker.sent[command_id] = Sent(time.perf_counter(), time.time())
        futures.append(await producer.send(KEYS_COMMANDS, value, key=str(key_ids[k]).encode()))
        ids.append(command_id)
    await asyncio.gather(*futures)
    return ids


def _command(command_id: str, command_type: str, account_id: str, key_id: uuid.UUID) -> bytes:
    data: dict[str, Any] = {
        "UpdateKey": {"name": f"bench-command-{command_id[:8]}"},
        "DisableKey": {"reason": "commands benchmark"},
        "EnableKey": {},
    }[command_type]
    return orjson.dumps(
        {
            "command_id": command_id,
            "command_type": command_type,
            "account_id": account_id,
            "key_id": key_id,
            "actor": {"type": "service", "id": "bench-commands", "ip": None, "user_agent": None},
            "issued_at": datetime.now(UTC),
            "correlation_id": f"bench-commands:{command_id}",
            "data": data,
        }
    )


async def _create_keys(stack: ks.StackEndpoints, account_id: str) -> list[uuid.UUID]:
    tools = ks.tools()
    pool = await asyncpg.create_pool(stack.keys_db, min_size=1, max_size=8)
    try:
        uow = KeysUnitOfWork(lambda: pool)
        gate = asyncio.Semaphore(8)

        async def one(i: int) -> uuid.UUID:
            attributes = KeyAttributes(name=f"bench-command-{i}", scopes=["keys:verify"])
            meta = ks.system_meta(f"bench-commands-setup:{i}")

            async def create(tx: KeysTransaction) -> use_cases.Outcome:
                return await use_cases.create(tx, tools, account_id, attributes, meta)

            async with gate:
                outcome = await use_cases.in_transaction(uow, create)
            return outcome.key.key_id

        return list(await asyncio.gather(*(one(i) for i in range(POOL_KEYS))))
    finally:
        await pool.close()


async def _kafka_floor(ctx: BenchContext, count: int) -> list[float]:
    """Send -> read latencies of one bare broker hop at `RATE`, on a scratch topic."""
    floor_count = min(count, int(RATE * 5))
    sent: dict[bytes, float] = {}
    read: dict[bytes, float] = {}
    done = asyncio.Event()

    def on_record(record: Any, read_at: float) -> None:
        read.setdefault(record.key, read_at)
        if len(read) >= floor_count:
            done.set()

    async with scratch_topic(ctx.bootstrap, "bench.commands-floor", 3) as topic:
        producer = AIOKafkaProducer(bootstrap_servers=ctx.bootstrap, **PRODUCER_OPTIONS)
        await producer.start()
        try:
            await producer.partitions_for(topic)
            async with ks.TopicTail(ctx.bootstrap, [topic], on_record):
                loop = asyncio.get_running_loop()
                began = loop.time()
                futures = []
                for i in range(floor_count):
                    await asyncio.sleep(max(0.0, began + i / RATE - loop.time()))
                    key = uuid.uuid4().hex.encode()
                    sent[key] = time.perf_counter()
                    futures.append(await producer.send(topic, b'{"floor":%d}' % i, key=key))
                await asyncio.gather(*futures)
                await asyncio.wait_for(done.wait(), DRAIN_TIMEOUT_S)
        finally:
            await producer.stop()
    ctx.note(kafka_floor_messages=floor_count)
    return [read[k] - at for k, at in sent.items()]
