"""The stack the tests run against: real Kafka, real PostgreSQL, the three services.

Chosen once per session, in this order:
1. `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` set: those are used, nothing local started
   for that part (the services are still started locally, pointed at them);
2. nothing set and a Docker engine answers: testcontainers (Kafka in KRaft mode, PostgreSQL);
3. otherwise the native local stack of `make up` (devstack), started if it is not running.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from devstack import kafka as local_kafka
from devstack import services as local_services
from devstack import stack as local_stack
from servicekit.settings import database_url_for

Mode = Literal["local", "external", "containers"]


@dataclass
class Stack:
    kafka: str
    database_url: str
    mode: Mode
    service_urls: dict[str, str] = field(default_factory=dict)
    _containers: list[Any] = field(default_factory=list)

    def url(self, service: str) -> str:
        return self.service_urls[service]

    def database(self, service: str) -> str:
        return os.environ.get(f"{service.upper()}_DATABASE_URL") or database_url_for(
            service, self.database_url
        )

    @property
    def broker_restartable(self) -> bool:
        return self.mode in ("local", "containers") and not os.environ.get(
            "KAFKA_BOOTSTRAP_SERVERS"
        )

    async def restart_broker(self) -> None:
        """Stop the broker process (or container) and start it again on the same data."""
        if self.mode == "containers":
            container = self._containers[0].get_wrapped_container()
            await asyncio.to_thread(container.restart, timeout=30)
        else:
            await asyncio.to_thread(local_kafka.stop)
            await asyncio.to_thread(local_kafka.start)
        await local_kafka.wait_ready(self.kafka, timeout=120)

    def close(self) -> None:
        if self.mode == "containers":
            for service in local_services.SERVICES:
                service.process.stop()
            for container in reversed(self._containers):
                container.stop()


def _docker_answers() -> bool:
    try:
        import docker  # noqa: PLC0415 - only needed where a Docker engine may answer

        client = docker.from_env(timeout=3)
        client.ping()
    except Exception:  # no engine, no socket, no permission: all mean "not available"
        return False
    return True


def _start_containers() -> tuple[str, str, list[Any]]:
    # Imported only in containers mode: they import the docker client.
    from testcontainers.kafka import KafkaContainer  # noqa: PLC0415
    from testcontainers.postgres import PostgresContainer  # noqa: PLC0415

    kafka = KafkaContainer("apache/kafka:4.1.1").with_kraft()
    postgres = PostgresContainer(
        "postgres:15", username="instagen", password="instagen", dbname="postgres"
    )
    kafka.start()
    postgres.start()
    server = postgres.get_connection_url(driver=None).replace("postgresql+psycopg2", "postgresql")
    return kafka.get_bootstrap_server(), server, [kafka, postgres]


async def start_stack() -> Stack:
    ends = local_stack.endpoints_from_env()
    configured = not (ends.kafka_local and ends.postgres_local)
    containers: list[Any] = []
    mode: Mode = "external" if configured else "local"
    if not configured and _docker_answers():
        mode = "containers"
        kafka_url, db_url, containers = await asyncio.to_thread(_start_containers)
        ends = local_stack.Endpoints(kafka_url, db_url, kafka_local=False, postgres_local=False)
    await local_stack.up_infra(ends)
    await local_stack.up_services(ends)
    return Stack(
        kafka=ends.kafka,
        database_url=ends.database_url,
        mode=mode,
        service_urls={s.name: s.url for s in local_services.SERVICES},
        _containers=containers,
    )
