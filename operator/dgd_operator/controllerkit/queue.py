"""A de-duplicating work queue of object keys, in the style of controller-runtime's workqueue.

- A key waiting in the queue is queued once, however many events arrive for it (coalescing:
  a Deployment rollout emitting twenty status events costs at most a couple of reconciles).
- A key being processed is never handed to a second worker; events arriving meanwhile mark it
  dirty and it is queued again when the worker calls `done`.
- `add_after` schedules a retry; the earliest pending retry for a key wins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """Async de-duplicating queue; see the module docstring for the guarantees."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, key: K) -> None:
        """Queue `key` now (no-op if already queued; deferred if being processed)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._active:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        """Queue `key` after `delay` seconds (keeps an earlier pending retry if there is one)."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        due = loop.time() + delay
        if existing is not None:
            if existing.when() <= due:
                return
            existing.cancel()
        self._timers[key] = loop.call_at(due, self._fire, key)

    def pending(self, key: K) -> float | None:
        """Seconds until the scheduled retry of `key` fires, or None when none is scheduled."""
        timer = self._timers.get(key)
        if timer is None:
            return None
        return max(0.0, timer.when() - asyncio.get_running_loop().time())

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> K:
        """Wait for the next key and mark it as being processed."""
        key = await self._queue.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: K) -> None:
        """Mark `key` processed; re-queue it if events arrived while it was processed."""
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def forget(self, key: K) -> None:
        """Drop a pending retry of `key` (e.g. its DGD was deleted)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def close(self) -> None:
        """Cancel every pending retry."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
