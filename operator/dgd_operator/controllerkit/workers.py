"""A pool of workers draining a `WorkQueue`, and per-key exponential backoff for retries.

The pool hands each key to one worker at a time (the queue guarantees a key is never processed
twice at once) and marks it done afterwards, whatever happened. What an outcome means (retry,
give up, report) is the handler's business, with a `Backoff` for the delay of the next retry;
an exception escaping it is logged and the worker carries on, so one bad key cannot stop the
pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import Generic, TypeVar

from dgd_operator.controllerkit.queue import WorkQueue

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

logger = logging.getLogger(__name__)


def raise_first(results: Iterable[object]) -> None:
    """Raise the first exception among `gather(..., return_exceptions=True)` results, if any."""
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def run_all(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Await every call concurrently; results in order, or the first failure (in order) once all
    are done. Nothing is left running and no exception goes unretrieved."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    raise_first(results)
    return [result for result in results if not isinstance(result, BaseException)]


class Backoff(Generic[K]):
    """Consecutive failures per key and the exponential delay they earn."""

    def __init__(self) -> None:
        self.failures: dict[K, int] = {}

    def next_delay(self, key: K, *, base: float, cap: float) -> float:
        """Count one more failure of `key`; its retry delay: `base * 2**(failures-1)`, capped."""
        attempt = self.failures.get(key, 0)
        self.failures[key] = attempt + 1
        return float(min(cap, base * (2**attempt)))

    def is_failing(self, key: K) -> bool:
        """True while `key` is in a failure streak."""
        return key in self.failures

    def reset(self, key: K) -> None:
        """End the failure streak of `key` (it succeeded, or it is gone)."""
        self.failures.pop(key, None)


class WorkerPool(Generic[K]):
    """`size` tasks, each taking a key from `queue` and awaiting `handle(key)`."""

    def __init__(
        self,
        queue: WorkQueue[K],
        handle: Callable[[K], Awaitable[None]],
        *,
        size: int,
        name: str,
        on_take: Callable[[], None] | None = None,
    ) -> None:
        self.queue = queue
        self._handle = handle
        self._size = size
        self._name = name
        self._on_take = on_take
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def running(self) -> bool:
        """True between `start` and `stop`."""
        return bool(self._tasks)

    def start(self) -> None:
        """Start the workers (no-op when running)."""
        if self._tasks:
            return
        for index in range(self._size):
            self._tasks.append(asyncio.create_task(self._work(), name=f"{self._name}-{index}"))

    async def stop(self) -> None:
        """Cancel the workers and wait for them to finish."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            if self._on_take is not None:
                self._on_take()
            try:
                await self._handle(key)
            except Exception:
                logger.exception("%s: handling %r failed", self._name, key)
            finally:
                self.queue.done(key)
