"""Extra service processes a test starts itself (a second instance, a bad setting)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from devstack import services
from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(stack: Stack, service: str, **overrides: str) -> dict[str, str]:
    env = services.service_env(stack.kafka, stack.database_url, service)
    env.update(overrides)
    return env


def spawn(service: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `python -m services.<service>` with its output in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
