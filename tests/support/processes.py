"""Extra service processes a test starts itself (a second instance, a bad setting)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from devstack import services
from tests.support.stack import Stack
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


SERVICE = {s.name: s for s in services.SERVICES}
"""The stack's processes by name (keys, audit, usage and its limit counter usage-limits)."""


async def restart_service(stack: Stack, name: str) -> None:
    """Start the service if it is not running, and wait until it is ready."""
    services.start(SERVICE[name], stack.kafka, stack.database_url)
    await services.wait_ready(SERVICE[name], timeout=90)


def service_env(stack: Stack, service: str, **overrides: str) -> dict[str, str]:
    env = services.service_env(stack.kafka, stack.database_url, service)
    env.update(overrides)
    return env


def service_cli(stack: Stack, service: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m services.<service>.cli ARGS` with the service's environment, as `make up`
    would run it against this stack; the caller judges the exit status."""
    return subprocess.run(
        [sys.executable, "-m", f"services.{service}.cli", *args],
        env=service_env(stack, service),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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


@contextlib.asynccontextmanager
async def another_instance(
    stack: Stack, service: str, log: Path, **settings: str
) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """One more process of `service` (or of one of the stack's processes, e.g.
    usage-limits) on a free port, same broker, database, role and consumer group as the
    stack's (with `settings` as extra environment); yields its URL and process once it is
    ready; stops it after."""
    port = free_port()
    deployed = SERVICE.get(service)  # a process of the stack's (usage-limits: usage's counter)
    module = deployed.service if deployed is not None else service
    role = {f"{module.upper()}_ROLE": deployed.role} if deployed and deployed.role else {}
    env = service_env(
        stack, module, **{**role, **settings, f"{module.upper()}_HTTP_PORT": str(port)}
    )
    process = spawn(module, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:

            async def ready() -> bool:
                assert process.poll() is None, f"the second {service} process exited; see {log}"
                try:
                    return (await client.get(f"{url}/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, timeout=60, interval=0.2, what=f"the second {service} process")
        yield url, process
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)
