"""The de-duplicating work queue."""

from __future__ import annotations

import asyncio

import pytest

from dgd_operator.controllerkit.queue import WorkQueue

pytestmark = pytest.mark.unit


async def test_coalesces_and_defers_keys_being_processed() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    key = await queue.get()
    assert key == "a"
    queue.add("a")  # arrives while "a" is processed: deferred, not handed to a second worker
    assert await queue.get() == "b"
    assert len(queue) == 0
    queue.done("a")
    assert await asyncio.wait_for(queue.get(), 1) == "a"


async def test_add_after_keeps_earliest_retry_and_add_cancels_it() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 0.05)
    queue.add_after("a", 10)
    assert await asyncio.wait_for(queue.get(), 1) == "a"
    queue.done("a")
    queue.add_after("b", 10)
    queue.add("b")
    assert await asyncio.wait_for(queue.get(), 1) == "b"
    queue.close()


async def test_pending_reports_the_earliest_scheduled_retry() -> None:
    queue: WorkQueue[str] = WorkQueue()
    assert queue.pending("a") is None
    queue.add_after("a", 30)
    queue.add_after("a", 60)  # a later retry does not replace the earlier one
    first = queue.pending("a")
    assert first is not None and 29 < first <= 30
    queue.add_after("a", 5)  # an earlier one does
    second = queue.pending("a")
    assert second is not None and 4 < second <= 5
    queue.forget("a")
    assert queue.pending("a") is None
