"""The real Apache Kafka broker, single node in KRaft mode, run from Maven Central's jars."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterable
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from contracts.topics import ALL_TOPICS, COMPACTED_TOPICS, MIN_PARTITIONS
from devstack import paths
from devstack.procs import Managed

BROKER = Managed("kafka")
HOST = "127.0.0.1"
PORT = int(os.environ.get("KAFKA_PORT", "9092"))
CONTROLLER_PORT = int(os.environ.get("KAFKA_CONTROLLER_PORT", "9093"))
HEAP = os.environ.get("KAFKA_HEAP", "-Xms256m -Xmx768m")
_MARKER = paths.KAFKA_LIBS / ".complete"


def fetch_jars() -> bool:
    """Resolve kafka_2.13 and its runtime dependencies with mvn, once. True if it downloaded."""
    if _MARKER.exists():
        return False
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise SystemExit(
            "kafka: needs `java` (17+) and `mvn` on PATH: apt-get install openjdk-17-jdk maven"
        )
    staging = paths.KAFKA_LIBS.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(paths.KAFKA_POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(
            f"kafka: mvn could not resolve the broker's jars:\n{result.stdout}{result.stderr}"
        )
    shutil.rmtree(paths.KAFKA_LIBS, ignore_errors=True)
    staging.rename(paths.KAFKA_LIBS)
    _MARKER.write_text("ok\n")
    return True


def _server_properties() -> Path:
    conf = paths.KAFKA_DATA / "server.properties"
    conf.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{HOST}:{CONTROLLER_PORT}",
                f"listeners=PLAINTEXT://{HOST}:{PORT},CONTROLLER://{HOST}:{CONTROLLER_PORT}",
                f"advertised.listeners=PLAINTEXT://{HOST}:{PORT}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={paths.KAFKA_DATA / 'logs'}",
                f"num.partitions={MIN_PARTITIONS}",
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=3",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "log.retention.hours=168",
                "num.network.threads=2",
                "num.io.threads=4",
                "",
            ]
        )
    )
    return conf


def _java(main: str, *args: str) -> list[str]:
    return [
        "java",
        *HEAP.split(),
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={paths.KAFKA_LOG4J}",
        "-cp",
        f"{paths.KAFKA_LIBS}/*",
        main,
        *args,
    ]


def format_storage() -> bool:
    """Format the KRaft log directory once; later starts reuse it (data survives down/up)."""
    paths.KAFKA_DATA.mkdir(parents=True, exist_ok=True)
    conf = _server_properties()
    if (paths.KAFKA_DATA / "logs" / "meta.properties").exists():
        return False
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    subprocess.run(
        _java(
            # `--cluster-id=ID` in one word: an id may start with "-" (one in 64), which the
            # tool's argument parser would take for an option.
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",
            "--config",
            str(conf),
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return True


def start() -> bool:
    """Start the broker in the background unless it runs already. True if it started it."""
    if BROKER.running():
        return False
    fetch_jars()
    format_storage()
    BROKER.start(_java("kafka.Kafka", str(paths.KAFKA_DATA / "server.properties")))
    return True


def stop() -> bool:
    return BROKER.stop(timeout=60)


async def wait_ready(bootstrap: str, timeout: float = 90.0) -> None:
    """Wait until the broker answers a metadata request."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.describe_cluster()
            return
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            await admin.close()
        if BROKER.pid_file.exists() and not BROKER.running():
            raise SystemExit(f"kafka: the broker exited; see {BROKER.log_file}")
        await asyncio.sleep(0.5)
    raise SystemExit(f"kafka: no metadata answer from {bootstrap} within {timeout:.0f}s ({last})")


async def create_topics(bootstrap: str, topics: Iterable[str] = ALL_TOPICS) -> list[str]:
    """Create the missing topics of INTERFACE.md; existing ones are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            new = [
                NewTopic(
                    t,
                    MIN_PARTITIONS,
                    replication_factor=1,
                    topic_configs={"cleanup.policy": "compact"} if t in COMPACTED_TOPICS else {},
                )
                for t in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another `make up` won the race
                await admin.create_topics(new)
        return missing
    finally:
        await admin.close()
