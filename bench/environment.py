"""Where a figure was measured: without this a number cannot be compared with another."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Environment:
    """The machine, interpreter, client library, broker address, time and commit of a run."""

    cpu_count: int | None
    load_avg_1m: float | None
    """Load when the benchmark began: above `cpu_count`, something else was competing."""
    python: str
    platform: str
    aiokafka: str | None
    kafka_bootstrap: str
    timestamp: str
    git_commit: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Environment:
        """Tolerant of results saved before a field was added (it reads as None)."""
        known: dict[str, Any] = {f.name: data.get(f.name) for f in fields(cls)}
        return cls(**known)


def capture_environment(kafka_bootstrap: str) -> Environment:
    return Environment(
        cpu_count=os.cpu_count(),
        load_avg_1m=_load_average(),
        python=platform.python_version(),
        platform=platform.platform(),
        aiokafka=_version("aiokafka"),
        kafka_bootstrap=kafka_bootstrap,
        timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
        git_commit=_git_commit(),
    )


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not every platform has one
        return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def _git_commit() -> str | None:
    """HEAD of the checkout, or None outside a git work tree (rev-parse changes nothing)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, like a developer's shell
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
