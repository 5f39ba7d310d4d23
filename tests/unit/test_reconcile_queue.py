"""The de-duplicating work queue."""

from __future__ import annotations

import asyncio

import pytest

from dgd_operator.reconcile.queue import WorkQueue

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
