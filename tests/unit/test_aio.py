"""dgd_runtime.aio: a coroutine started eagerly runs on the caller's stack until it first waits.

Covered: a coroutine that never waits finishes inside ``start()`` without a task (its value or
its early exception kept, not raised); the part before the first wait is synchronous and the
rest runs as a task once the awaited future is done (a bare ``await asyncio.sleep(0)`` resumes
next iteration); ``wait()`` registered before and after the task exists; ``cancel()`` while
waiting on a future, on an ``asyncio.Task``, after a bare yield, after the task exists, and in
the race where the awaited future is already done but its callback has not run yet; exceptions
raised after the first wait; several awaits in sequence after resumption.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from dgd_runtime.aio import EagerTask, start_eagerly

pytestmark = pytest.mark.unit

# Event-loop iterations we let pass before deciding that something will not happen: counted in
# iterations (each ``asyncio.sleep(0)`` is one), not seconds, so no wall clock is involved.
ITERATIONS = 100
# Only a guard against a hang if wait() were broken; never reached when the tests pass.
HANG_GUARD_S = 10.0


def other_tasks() -> set[asyncio.Task[Any]]:
    """The tasks of the running loop that are not finished, except the test's own."""
    return asyncio.all_tasks() - {asyncio.current_task()}


async def until(predicate: Callable[[], bool]) -> None:
    """Let the loop run until ``predicate()`` holds (bounded by ITERATIONS iterations)."""
    for _ in range(ITERATIONS):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not reached within {ITERATIONS} loop iterations")


async def finished(eager: EagerTask[Any]) -> None:
    """``eager.wait()``, guarded against hanging."""
    await asyncio.wait_for(eager.wait(), HANG_GUARD_S)


async def test_coroutine_that_never_waits_finishes_inside_start_without_a_task() -> None:
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    ready.set_result(40)

    async def nested() -> int:
        return 2

    async def compute() -> int:
        # Awaiting a done future or a coroutine that returns at once does not suspend.
        return await ready + await nested()

    before = other_tasks()
    eager = start_eagerly(compute())
    assert eager.done()
    assert eager.result() == 42
    assert other_tasks() == before
    await finished(eager)  # returns at once
    assert eager.cancel() is False


async def test_construction_runs_nothing_until_start() -> None:
    steps: list[str] = []

    async def record() -> None:
        steps.append("ran")

    eager = EagerTask(record())
    assert steps == []
    assert not eager.done()
    eager.start()
    assert steps == ["ran"]
    assert eager.done()


@pytest.mark.parametrize("error", [ValueError("early"), asyncio.CancelledError("early")])
async def test_exception_before_first_wait_is_kept_and_not_raised_by_start(
    error: BaseException,
) -> None:
    async def fail() -> int:
        raise error

    before = other_tasks()
    eager = start_eagerly(fail())  # does not raise
    assert eager.done()
    assert other_tasks() == before
    with pytest.raises(type(error), match="early"):
        eager.result()
    await finished(eager)  # wait() never raises what the coroutine raised
    assert eager.cancel() is False


async def test_keyboard_interrupt_before_first_wait_propagates_from_start_and_is_kept() -> None:
    async def interrupted() -> None:
        raise KeyboardInterrupt

    eager = EagerTask(interrupted())
    with pytest.raises(KeyboardInterrupt):
        eager.start()
    assert eager.done()
    with pytest.raises(KeyboardInterrupt):
        eager.result()


async def test_part_before_first_wait_runs_synchronously_and_the_rest_after_the_future() -> None:
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def work() -> str:
        steps.append("before")
        got = await gate
        steps.append(f"after {got}")
        return got.upper()

    eager = start_eagerly(work())
    assert steps == ["before"]
    assert not eager.done()
    with pytest.raises(asyncio.InvalidStateError):
        eager.result()
    # While it waits for the future it is not a task yet, and it stays where it is.
    assert other_tasks() == set()
    for _ in range(ITERATIONS):
        await asyncio.sleep(0)
    assert steps == ["before"]
    assert not eager.done()

    gate.set_result("x")
    await until(eager.done)
    assert steps == ["before", "after x"]
    assert eager.result() == "X"
    assert eager.cancel() is False


async def test_wait_registered_before_the_task_exists() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def work() -> int:
        return await gate * 2

    eager = start_eagerly(work())
    assert other_tasks() == set()  # no task yet: the coroutine waits for gate in start()
    waiters = [asyncio.create_task(eager.wait()) for _ in range(2)]
    await until(lambda: len(other_tasks()) == 2)  # both waiters are now waiting
    assert not any(w.done() for w in waiters)
    gate.set_result(21)
    await asyncio.wait_for(asyncio.gather(*waiters), HANG_GUARD_S)
    assert eager.done()
    assert eager.result() == 42


async def test_wait_registered_after_the_task_exists() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[int] = loop.create_future()
    second: asyncio.Future[int] = loop.create_future()

    async def work() -> int:
        return await first + await second

    eager = start_eagerly(work())
    first.set_result(1)
    await until(lambda: len(other_tasks()) == 1)  # it runs in a task now, waiting for second
    assert not eager.done()
    loop.call_soon(second.set_result, 2)
    await finished(eager)
    assert eager.done()
    assert eager.result() == 3
    assert eager.cancel() is False


async def test_cancel_while_waiting_on_a_future_raises_at_that_await() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def work() -> str:
        try:
            await gate
        except asyncio.CancelledError:
            seen.append("cancelled")
            return "caught"
        return "not cancelled"

    eager = start_eagerly(work())
    assert eager.cancel() is True
    await finished(eager)
    assert seen == ["cancelled"]
    assert eager.done()
    assert eager.result() == "caught"
    assert eager.cancel() is False


async def test_cancel_while_waiting_on_a_future_cancels_a_coroutine_that_does_not_catch() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def work() -> None:
        await gate
        steps.append("resumed")

    eager = start_eagerly(work())
    assert eager.cancel() is True
    await finished(eager)
    assert eager.done()
    assert steps == []
    with pytest.raises(asyncio.CancelledError):
        eager.result()


@pytest.mark.parametrize("outcome", ["result", "exception"])
async def test_cancel_after_the_awaited_future_completed_but_before_resumption_still_cancels(
    outcome: str,
) -> None:
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def work() -> str:
        try:
            return await gate
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        except LookupError:
            seen.append("exception")
            raise

    eager = start_eagerly(work())
    # In one synchronous block: the future completes (its done callback is only scheduled),
    # then cancel() comes. The coroutine must see CancelledError, not the future's outcome.
    if outcome == "result":
        gate.set_result("value")
    else:
        gate.set_exception(LookupError("lost"))
    assert eager.cancel() is True
    await finished(eager)
    assert seen == ["cancelled"]
    assert eager.done()
    with pytest.raises(asyncio.CancelledError):
        eager.result()


async def test_bare_yield_continues_on_the_next_iteration() -> None:
    steps: list[int] = []

    async def work() -> int:
        steps.append(1)
        await asyncio.sleep(0)
        steps.append(2)
        return 3

    eager = start_eagerly(work())
    assert steps == [1]
    assert not eager.done()
    await asyncio.sleep(0)  # one iteration: the task that continues it runs before we resume
    assert steps == [1, 2]
    assert eager.done()
    assert eager.result() == 3


async def test_cancel_after_a_bare_yield_raises_at_that_await() -> None:
    seen: list[str] = []

    async def work() -> None:
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    eager = start_eagerly(work())
    assert eager.cancel() is True
    await finished(eager)
    assert seen == ["cancelled"]
    with pytest.raises(asyncio.CancelledError):
        eager.result()


async def test_awaiting_a_task_returns_its_result() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def inner() -> int:
        return await gate

    inner_task = asyncio.create_task(inner())

    async def outer() -> int:
        return await inner_task + 1

    eager = start_eagerly(outer())
    assert not eager.done()
    gate.set_result(41)
    await finished(eager)
    assert eager.result() == 42


async def test_cancel_while_awaiting_a_task_cancels_that_task() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def inner() -> int:
        try:
            return await gate
        except asyncio.CancelledError:
            seen.append("inner cancelled")
            raise

    inner_task = asyncio.create_task(inner())
    await asyncio.sleep(0)  # the inner task now waits for gate
    assert not inner_task.done()

    async def outer() -> int:
        try:
            return await inner_task
        except asyncio.CancelledError:
            seen.append("outer cancelled")
            raise

    eager = start_eagerly(outer())
    assert eager.cancel() is True
    await finished(eager)
    assert inner_task.cancelled()
    assert seen == ["inner cancelled", "outer cancelled"]
    with pytest.raises(asyncio.CancelledError):
        eager.result()


async def test_exception_after_the_first_wait_is_kept_for_result() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def work() -> None:
        await gate
        raise RuntimeError("late")

    eager = start_eagerly(work())
    gate.set_result(None)
    await finished(eager)  # does not raise
    assert eager.done()
    with pytest.raises(RuntimeError, match="late"):
        eager.result()


async def test_exception_after_the_first_wait_reaches_a_waiter_registered_before_the_task() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def work() -> None:
        await gate
        raise RuntimeError("late")

    eager = start_eagerly(work())
    waiter = asyncio.create_task(eager.wait())
    await asyncio.sleep(0)
    gate.set_result(None)
    await asyncio.wait_for(waiter, HANG_GUARD_S)
    with pytest.raises(RuntimeError, match="late"):
        eager.result()


async def test_awaits_after_resumption_behave_normally() -> None:
    loop = asyncio.get_running_loop()
    gates: list[asyncio.Future[int]] = [loop.create_future() for _ in range(3)]
    got: list[int] = []

    async def work() -> list[int]:
        for gate in gates:
            got.append(await gate)
        await asyncio.sleep(0)
        got.append(await asyncio.wait_for(asyncio.sleep(0, 3), HANG_GUARD_S))  # a task inside
        return got

    def has(n: int) -> Callable[[], bool]:
        return lambda: len(got) == n

    eager = start_eagerly(work())
    for i, gate in enumerate(gates):
        assert got == list(range(i))
        gate.set_result(i)
        await until(has(i + 1))
    await finished(eager)
    assert eager.result() == [0, 1, 2, 3]


async def test_cancel_after_the_task_exists_raises_at_the_current_await() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[None] = loop.create_future()
    second: asyncio.Future[None] = loop.create_future()
    seen: list[str] = []

    async def work() -> None:
        await first
        seen.append("resumed")
        try:
            await second
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    eager = start_eagerly(work())
    first.set_result(None)
    await until(lambda: seen == ["resumed"])
    assert eager.cancel() is True
    await finished(eager)
    assert seen == ["resumed", "cancelled"]
    with pytest.raises(asyncio.CancelledError):
        eager.result()
    assert eager.cancel() is False


async def test_cancel_during_the_synchronous_first_step_is_delivered_at_the_first_wait() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen: list[str] = []
    holder: list[EagerTask[None]] = []

    async def work() -> None:
        seen.append(f"cancel() returned {holder[0].cancel()}")
        try:
            await gate
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    eager = EagerTask(work())
    holder.append(eager)
    eager.start()
    try:
        await until(eager.done)  # gate is never completed: only the cancellation can end it
        assert seen == ["cancel() returned True", "cancelled"]
        with pytest.raises(asyncio.CancelledError):
            eager.result()
    finally:
        gate.cancel()  # while the bug lasts, the coroutine still waits for gate: end it
        await finished(eager)


# The tests above, without parameters, once more on uvloop: the frontend and the worker run
# their eager starts there in production (pytest-asyncio runs the tests above on the default
# loop and picks other loops only through a conftest hook).
UVLOOP_SCENARIOS = [
    test_coroutine_that_never_waits_finishes_inside_start_without_a_task,
    test_part_before_first_wait_runs_synchronously_and_the_rest_after_the_future,
    test_wait_registered_before_the_task_exists,
    test_wait_registered_after_the_task_exists,
    test_cancel_while_waiting_on_a_future_raises_at_that_await,
    test_cancel_while_waiting_on_a_future_cancels_a_coroutine_that_does_not_catch,
    test_bare_yield_continues_on_the_next_iteration,
    test_cancel_after_a_bare_yield_raises_at_that_await,
    test_awaiting_a_task_returns_its_result,
    test_cancel_while_awaiting_a_task_cancels_that_task,
    test_exception_after_the_first_wait_is_kept_for_result,
    test_exception_after_the_first_wait_reaches_a_waiter_registered_before_the_task,
    test_awaits_after_resumption_behave_normally,
    test_cancel_after_the_task_exists_raises_at_the_current_await,
]


@pytest.mark.parametrize("scenario", UVLOOP_SCENARIOS, ids=lambda f: f.__name__[len("test_") :])
def test_on_uvloop(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


@pytest.mark.parametrize("outcome", ["result", "exception"])
def test_cancel_race_on_uvloop(outcome: str) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(
            test_cancel_after_the_awaited_future_completed_but_before_resumption_still_cancels(
                outcome
            )
        )


async def test_done_callbacks_run_once_whether_added_before_during_or_after_the_task() -> None:
    calls: list[str] = []
    assert start_eagerly(_returns(1)).done()
    start_eagerly(_returns(1)).add_done_callback(lambda _: calls.append("already done"))
    assert calls == ["already done"]

    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def work() -> int:
        await gate
        await asyncio.sleep(0)
        return 2

    eager = start_eagerly(work())
    eager.add_done_callback(lambda e: calls.append(f"before the task: {e.result()}"))
    gate.set_result(None)
    await asyncio.sleep(0)  # the task exists now and waits in sleep(0)
    eager.add_done_callback(lambda e: calls.append(f"with the task: {e.result()}"))
    await eager.wait()
    assert calls == ["already done", "before the task: 2", "with the task: 2"]


async def _returns(value: int) -> int:
    return value
