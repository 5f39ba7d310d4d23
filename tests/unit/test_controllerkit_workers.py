"""The worker pool, backoff, Event recorder and expiring memory of the controller kit."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from tests.unit.reconcile_fakes import FakeKube

from dgd_operator.controllerkit.events import EventRecorder
from dgd_operator.controllerkit.indexes import Expiring, Index
from dgd_operator.controllerkit.kubeapi import ApiError, Manifest
from dgd_operator.controllerkit.queue import WorkQueue
from dgd_operator.controllerkit.workers import Backoff, WorkerPool

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("base", "cap", "delays"),
    [
        (1.0, 60.0, [1.0, 2.0, 4.0, 8.0]),
        (0.5, 1.5, [0.5, 1.0, 1.5, 1.5]),
        (2.0, 300.0, [2.0, 4.0, 8.0, 16.0]),
    ],
    ids=["transient", "capped", "unexpected"],
)
def test_backoff_doubles_up_to_the_cap(base: float, cap: float, delays: list[float]) -> None:
    backoff: Backoff[str] = Backoff()
    assert [backoff.next_delay("k", base=base, cap=cap) for _ in delays] == delays
    assert backoff.is_failing("k")
    backoff.reset("k")
    assert not backoff.is_failing("k") and backoff.next_delay("k", base=base, cap=cap) == base


async def test_worker_pool_processes_each_key_and_marks_it_done_even_on_failure() -> None:
    queue: WorkQueue[str] = WorkQueue()
    seen: list[str] = []
    took = asyncio.Semaphore(0)

    async def handle(key: str) -> None:
        seen.append(key)
        took.release()
        if key == "bad":
            raise RuntimeError("boom")

    pool = WorkerPool(queue, handle, size=2, name="test")
    pool.start()
    try:
        queue.add("bad")
        queue.add("a")
        for _ in range(2):
            await asyncio.wait_for(took.acquire(), 1)
        queue.add("bad")  # done() was called despite the failure, so it is taken again
        await asyncio.wait_for(took.acquire(), 1)
    finally:
        await pool.stop()
    assert sorted(seen) == ["a", "bad", "bad"] and not pool.running


class _Refusing(FakeKube):
    async def create(self, manifest: Manifest) -> Manifest:
        raise ApiError(403, "Forbidden", "events is forbidden")


async def test_event_recorder_builds_through_the_builder_and_swallows_api_errors() -> None:
    def build(involved: Mapping[str, Any], type_: str, reason: str, message: str) -> Manifest:
        return {
            "kind": "Event",
            "reason": reason,
            "message": message,
            "about": involved["metadata"]["name"],
        }

    kube = FakeKube()
    await EventRecorder(kube, build).post(
        {"metadata": {"name": "g"}}, "Normal", "Created", "created x"
    )
    assert kube.events == [
        {"kind": "Event", "reason": "Created", "message": "created x", "about": "g"}
    ]
    await EventRecorder(_Refusing(), build).post(
        {"metadata": {"name": "g"}}, "Normal", "Created", "created x"
    )


def test_expiring_trusts_a_mark_for_its_ttl() -> None:
    now = [0.0]
    memory: Expiring[str] = Expiring(10.0, clock=lambda: now[0])
    assert not memory.fresh("a")
    memory.mark("a")
    now[0] = 9.9
    assert memory.fresh("a")
    now[0] = 10.0
    assert not memory.fresh("a")
    memory.mark("a")
    memory.forget("a")
    assert not memory.fresh("a")


def test_index_groups_values_by_key_and_follows_an_object_to_its_new_key() -> None:
    index: Index[str, int] = Index()
    assert index.values("k") == [] and list(index) == [] and len(index) == 0
    index.put("u1", "k", 1)
    index.put("u2", "k", 2)
    index.put("u3", "j", 3)
    assert index.values("k") == [1, 2] and sorted(index) == ["j", "k"]
    assert sorted(index.all_values()) == [1, 2, 3] and len(index) == 3
    index.put("u2", "j", 20)  # relabelled: leaves its old key
    assert index.values("k") == [1] and sorted(index.values("j")) == [3, 20]
    index.put("u1", None, 1)  # no longer indexed
    index.discard("u3")
    index.discard("unknown")
    assert list(index) == ["j"] and index.values("j") == [20] and len(index) == 1
