"""Bring the whole local stack up and down: Kafka, PostgreSQL, then the three services.

`KAFKA_BOOTSTRAP_SERVERS` or `DATABASE_URL` in the environment mean "use that one": nothing
local is started for that part.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

from devstack import gateway, kafka, paths, postgres, services


@dataclass
class Endpoints:
    kafka: str
    database_url: str
    kafka_local: bool
    postgres_local: bool
    started: list[str] = field(default_factory=list)


def endpoints_from_env() -> Endpoints:
    external_kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    external_db = os.environ.get("DATABASE_URL")
    return Endpoints(
        kafka=external_kafka or f"{kafka.HOST}:{kafka.PORT}",
        database_url=external_db or postgres.server_url(),
        kafka_local=external_kafka is None,
        postgres_local=external_db is None,
    )


async def up_infra(ends: Endpoints) -> Endpoints:
    """Start (when local) and wait for the broker and the database; create topics and dbs."""
    paths.ensure_dirs()
    if ends.kafka_local and kafka.start():
        ends.started.append("kafka")
    if ends.postgres_local and postgres.start():
        ends.started.append("postgres")
    await kafka.wait_ready(ends.kafka)
    await postgres.wait_ready(ends.database_url)
    await kafka.create_topics(ends.kafka)
    await postgres.create_databases(ends.database_url)
    return ends


async def up_services(ends: Endpoints) -> Endpoints:
    for service in services.SERVICES:
        if services.start(service, ends.kafka, ends.database_url):
            ends.started.append(service.name)
    for service in services.SERVICES:
        await services.wait_ready(service)
    return ends


def down() -> list[str]:
    """Stop the gateway, then the services (they flush and commit), then the broker and
    the database."""
    stopped = gateway.stop()
    stopped += [s.name for s in services.SERVICES if s.process.stop()]
    if kafka.stop():
        stopped.append("kafka")
    if postgres.stop():
        stopped.append("postgres")
    return stopped


def clean() -> None:
    down()
    shutil.rmtree(paths.DATA, ignore_errors=True)
    shutil.rmtree(paths.RUN, ignore_errors=True)
