"""What every service process is made of, wired once: settings, database pool, Kafka
producer and subscriptions, the HTTP app, and a clean stop on SIGTERM.

A service's `bootstrap` builds a `Runtime`, registers its subscriptions, topics it writes
and routes, and hands the app to `serve`. Nothing connects before the app starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from starlette.types import ASGIApp

from servicekit import db
from servicekit.consumer import (
    AheadBatchProcessor,
    BatchProcessor,
    Subscription,
    positioned,
    subscribe,
)
from servicekit.http import create_app
from servicekit.kafka import DeadLetters, Headers, KafkaProducer
from servicekit.logging import configure_logging, get_logger
from servicekit.settings import ServiceSettings

T = TypeVar("T")
STOP_GRACE_S = 20.0
"""How long a stop waits for the batch a subscription has in hand."""
Hook = Callable[[], Awaitable[None]]
log = get_logger(__name__)


class Topic:
    """A topic this service writes: declared once, so the AsyncAPI document and the code
    that sends cannot disagree."""

    def __init__(self, runtime: Runtime, name: str) -> None:
        self.name = name
        self._runtime = runtime

    async def send(self, value: bytes, key: bytes | None = None, headers: Headers = ()) -> None:
        await self._runtime.producer.send(self.name, value, key=key, headers=headers)

    async def send_many(self, messages: Sequence[tuple[bytes | None, bytes, Headers]]) -> None:
        await self._runtime.producer.send_many(self.name, messages)


class Runtime:
    def __init__(
        self,
        settings: ServiceSettings,
        migrations: Path,
        description: str,
        database_role: str | None = None,
        producer_linger_ms: int = 5,
    ) -> None:
        """`database_role`: the role the service's connections act as once the migrations
        (run as the connecting user, who owns the tables) are applied. `producer_linger_ms`:
        how long the producer waits to fill a batch (0 for a service that only sends whole
        batches and waits for them: lingering would only delay each)."""
        self.settings = settings
        self.migrations = migrations
        self.description = description
        self.database_role = database_role
        client_id = settings.kafka_client_id or f"instagen-{settings.service_name}"
        self.producer = KafkaProducer(
            settings.kafka_bootstrap_servers, client_id=client_id, linger_ms=producer_linger_ms
        )
        self.dead_letters = DeadLetters(self.producer)
        self.broker = KafkaBroker(
            settings.kafka_bootstrap_servers,
            client_id=client_id,
            consumer_only=True,  # every write goes through `self.producer`
            allow_auto_create_topics=False,
            apply_types=False,
            graceful_timeout=STOP_GRACE_S,
            description=description,
            logger=logging.getLogger("faststream"),  # JSON lines through servicekit.logging
            log_level=logging.DEBUG,  # "Received"/"Processed" per batch: debug, not info
        )
        self.pool: Any = None
        self.processors: dict[str, BatchProcessor[Any]] = {}
        self._on_start: list[Hook] = []
        self._on_stop: list[Hook] = []

    # --- wiring -------------------------------------------------------------------
    def subscribe(self, subscription: Subscription[T]) -> None:
        # By title where one is given: a service may read one topic twice (two groups).
        self.processors[subscription.title or subscription.topic] = subscribe(
            self.broker, subscription, self.dead_letters
        )

    def writes(self, topic: str, payload: Any, description: str) -> Topic:
        self.broker.publisher(
            topic, schema=payload, description=description, title=f"{topic}:publish"
        )
        return Topic(self, topic)

    def on_start(self, hook: Hook) -> None:
        """Run after the database, the producer and the subscriptions are up."""
        self._on_start.append(hook)

    def on_stop(self, hook: Hook) -> None:
        """Run first at shutdown, before the subscriptions and connections close."""
        self._on_stop.append(hook)

    def asyncapi(self) -> dict[str, Any]:
        spec = AsyncAPI(
            self.broker,
            title=f"InstaGen {self.settings.service_name} service",
            version="1.0.0",
            description=self.description,
            schema_version="3.0.0",
        )
        document: dict[str, Any] = spec.to_specification().to_jsonable()
        return document

    # --- lifecycle ------------------------------------------------------------------
    @asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        self.pool = await db.create_pool(self.settings.service_database)
        await db.migrate(self.pool, self.migrations)
        if self.database_role is not None:
            owner, self.pool = self.pool, None
            await owner.close()
            self.pool = await db.create_pool(
                self.settings.service_database, role=self.database_role
            )
        await self.producer.start()
        await self.broker.start()
        for processor in self.processors.values():
            if processor.sub.group_id is None:  # reads from its start: fix where that is
                held = await positioned(processor)
                log.info("reader_positioned", topic=processor.sub.topic, partitions=held)
        for hook in self._on_start:
            await hook()
        log.info("started", port=self.settings.http_port)
        try:
            yield
        finally:
            log.info("stopping")
            for processor in self.processors.values():
                if isinstance(processor, AheadBatchProcessor):  # store what it read ahead
                    try:  # as long as the broker waits for a batch in hand
                        await asyncio.wait_for(processor.settle(), STOP_GRACE_S)
                    except TimeoutError:  # not committed: read again after the restart
                        log.warning("batch_in_hand_not_stored", topic=processor.sub.topic)
            for hook in reversed(self._on_stop):
                await hook()
            await self.broker.stop()  # waits for the batch in hand, which commits
            await self.producer.stop()
            await self.pool.close()
            log.info("stopped")

    def create_app(self, body_limits: Mapping[str, int] | None = None) -> FastAPI:
        return create_app(
            title=f"InstaGen {self.settings.service_name} service",
            description=self.description,
            lifespan=self.lifespan,
            readiness={"database": self._db_ready, "kafka": self.producer.ping},
            asyncapi=self.asyncapi,
            body_limits=body_limits,
        )

    async def _db_ready(self) -> bool:
        return self.pool is not None and await db.ping(self.pool)


def collect_rarely() -> None:
    """For a service that ingests by the hundred thousand: its batches allocate a few
    short-lived objects per message, almost none of them in cycles, and a collection every
    700 allocations (the default) cost a fifth of the CPU. What was built at start-up is
    never collected: frozen, not scanned. Call it once everything is built, before serve."""
    gc.set_threshold(100_000, 50, 100)
    gc.freeze()


def serve(
    app: ASGIApp, settings: ServiceSettings, http: type[asyncio.Protocol] | None = None
) -> None:
    """Run the HTTP server; SIGTERM and SIGINT stop it cleanly through the lifespan.
    `http`: a protocol class of uvicorn's httptools kind (servicekit.fast_http)."""
    configure_logging(settings.service_name, settings.log_level, settings.log_file)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http=http or "httptools",
        timeout_graceful_shutdown=25,
    )
    _Server(config).run()


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after a graceful shutdown, so the process would report
    "killed by signal"; a stop that completed cleanly exits 0 instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()
