"""What a usage process runs besides its subscriptions (either role's)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from servicekit.periodic import Periodic
from servicekit.runtime import Runtime


class Part:
    """Something a process starts after its subscriptions and stops before them."""

    def __init__(
        self,
        start: Callable[[], object],
        stop: Callable[[], Awaitable[object]],
        after_start: Callable[[], object] = lambda: None,
    ) -> None:
        self._start, self._stop, self._after_start = start, stop, after_start

    async def start(self) -> None:
        started = self._start()
        if inspect.isawaitable(started):
            await started
        self._after_start()

    async def stop(self) -> None:
        await self._stop()


def periodic(worker: Periodic) -> Part:
    return Part(worker.start, worker.stop)


def pool_of(runtime: Runtime) -> Callable[[], object]:
    return lambda: runtime.pool
