"""A task that runs every `interval` seconds until stopped (or sooner when nudged, e.g. an
outbox woken by the commit that filled it); a failure is logged, not fatal."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from servicekit.logging import get_logger

log = get_logger(__name__)


class Periodic:
    def __init__(self, name: str, interval: float, work: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self.interval = interval
        self._work = work
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def nudge(self) -> None:
        """Run the work now rather than at the end of the interval."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self, final_run: bool = False) -> None:
        """Cancel the loop; with `final_run`, do the work once more (e.g. flush a buffer)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if final_run:
            await self._run_once()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            await self._run_once()

    async def _run_once(self) -> None:
        try:
            await self._work()
        except Exception as exc:  # the next round retries; the service stays up
            log.warning(
                "periodic_task_failed", task=self.name, error=f"{type(exc).__name__}: {exc}"
            )
