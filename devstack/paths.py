"""Where the local stack keeps its cache, data, logs and pid files (all git-ignored)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
DATA = ROOT / ".data"
RUN = ROOT / ".run"
LOGS = RUN / "logs"
PIDS = RUN / "pids"

KAFKA_LIBS = CACHE / "kafka" / "libs"
KAFKA_POM = ROOT / "infra" / "kafka" / "pom.xml"
KAFKA_LOG4J = ROOT / "infra" / "kafka" / "log4j2.properties"
KAFKA_DATA = DATA / "kafka"
POSTGRES_DATA = DATA / "postgres"
SECRETS_ENV = DATA / "secrets.env"


def admin_key_file(account: str) -> Path:
    """The git-ignored file (mode 0600) that holds an account's bootstrap admin key."""
    return DATA / f"admin-key.{account}"


def ensure_dirs() -> None:
    for path in (CACHE, DATA, LOGS, PIDS):
        path.mkdir(parents=True, exist_ok=True)
