"""Polling helper for async tests (waits for a condition; never asserts on durations)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float,
    description: str,
    interval: float = 0.02,
) -> None:
    """Poll ``predicate`` (sync or async) until true; ``AssertionError`` naming it on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {description}")
        await asyncio.sleep(interval)
