"""Event-loop helpers shared by the frontend and the worker.

:func:`start_eagerly` is Python 3.12's eager task start, available on 3.11 too: the coroutine
runs at once, on the caller's stack, until it first has to wait, and only then becomes a task.
Why it matters here: under load one event-loop iteration carries every stream's tokens (1-10
ms), and ``loop.create_task`` runs a coroutine's first step one iteration later. A new request
crosses several such hand-offs before it reaches a worker (accept, connection set-up, the
handler); started eagerly, the handler parses, tokenizes, routes and publishes the request
inside the callback that read it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class EagerTask(Generic[T]):
    """A coroutine started by :func:`start_eagerly`: a task once it has waited for something.

    Supports what callers of a task use here: :meth:`cancel`, :meth:`done`, :meth:`result`,
    :meth:`add_done_callback` and awaiting (:meth:`wait`). Create it, keep the reference where
    the coroutine may look for it, then :meth:`start` it (the coroutine may finish inside
    ``start``); :func:`start_eagerly` does both when nothing needs the reference first.
    """

    __slots__ = (
        "_awaited",
        "_callbacks",
        "_cancel_requested",
        "_coro",
        "_exception",
        "_finished",
        "_result",
        "_task",
    )

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        """Wrap ``coro``; nothing runs until :meth:`start`."""
        self._coro = coro
        self._task: asyncio.Task[T] | None = None
        self._awaited: asyncio.Future[Any] | None = None
        self._finished = False
        self._cancel_requested = False
        self._result: T | None = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[EagerTask[T]], object]] | None = None

    def start(self) -> None:
        """Run the coroutine until it waits; then hand it to a task when the wait is over."""
        try:
            yielded = self._coro.send(None)
        except StopIteration as stop:
            self._finish(stop.value, None)
            return
        except BaseException as exc:  # kept like a task keeps it (KeyboardInterrupt included)
            self._finish(None, exc)
            if not isinstance(exc, Exception | asyncio.CancelledError):
                raise
            return
        if yielded is None:  # a bare yield (asyncio.sleep(0)): resume next iteration
            self._become_task()
        elif asyncio.isfuture(yielded):
            # The coroutine sits in Future.__await__; a task may resume it once the future
            # is done (resuming earlier raises "await wasn't used with future").
            yielded._asyncio_future_blocking = False
            self._awaited = yielded
            yielded.add_done_callback(self._on_awaited_done)
            if self._cancel_requested:  # cancel() came while the first step ran
                yielded.cancel()
        else:
            self._coro.throw(RuntimeError(f"coroutine yielded a non-future: {yielded!r}"))

    def _on_awaited_done(self, _fut: asyncio.Future[Any]) -> None:
        self._awaited = None
        self._become_task()

    def _become_task(self) -> None:
        task = self._task = asyncio.get_running_loop().create_task(self._coro)
        if self._cancel_requested:
            task.cancel()  # the awaited future was done already when cancel() came
        if self._callbacks is not None:
            task.add_done_callback(self._on_task_done)

    def _on_task_done(self, task: asyncio.Task[T]) -> None:
        if task.cancelled():
            self._finish(None, asyncio.CancelledError())
        else:
            exc = task.exception()
            self._finish(task.result() if exc is None else None, exc)

    def _finish(self, result: T | None, exc: BaseException | None) -> None:
        self._finished = True
        self._result = result
        self._exception = exc
        for callback in self._callbacks or ():
            callback(self)

    def done(self) -> bool:
        """True once the coroutine returned or raised."""
        if self._task is not None:
            return self._task.done()
        return self._finished

    def cancel(self) -> bool:
        """Cancel the coroutine at its current wait (as ``Task.cancel``)."""
        if self._task is not None:
            return self._task.cancel()
        if self._finished:
            return False
        # The coroutine sees CancelledError at its await, in the task that resumes it.
        self._cancel_requested = True
        if self._awaited is not None:
            self._awaited.cancel()
        return True

    def result(self) -> T:
        """The coroutine's return value; raises what it raised."""
        if self._task is not None:
            return self._task.result()
        if not self._finished:
            raise asyncio.InvalidStateError("the coroutine has not finished")
        if self._exception is not None:
            raise self._exception
        return self._result  # type: ignore[return-value]

    def add_done_callback(self, callback: Callable[[EagerTask[T]], object]) -> None:
        """Call ``callback(self)`` once the coroutine has finished (at once if it has)."""
        if self.done():
            callback(self)
            return
        if self._callbacks is None:
            self._callbacks = []
            if self._task is not None:
                self._task.add_done_callback(self._on_task_done)
        self._callbacks.append(callback)

    async def wait(self) -> None:
        """Wait until the coroutine has finished (never raises what it raised)."""
        if self.done():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake(_: EagerTask[T]) -> None:
            if not waiter.done():  # the waiting task may have been cancelled
                waiter.set_result(None)

        self.add_done_callback(wake)
        await waiter


def start_eagerly(coro: Coroutine[Any, Any, T]) -> EagerTask[T]:
    """Run ``coro`` now until it first waits, then continue it as a task (see module doc).

    Call it from the event loop's thread with the loop running. What the coroutine raises
    before it first waits is kept, as a task keeps it (read it with :meth:`EagerTask.result`);
    a coroutine that never waits creates no task at all.
    """
    eager: EagerTask[T] = EagerTask(coro)
    eager.start()
    return eager
