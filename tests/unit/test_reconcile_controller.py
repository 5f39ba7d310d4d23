"""The controller's reconcile against the typed fakes of `reconcile_fakes`."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from tests.unit.reconcile_fakes import (
    KEY,
    FakeKube,
    FakeView,
    bind,
    controller_for,
    deliver,
    owned,
)
from tests.unit.reconcile_fakes import dgd as _dgd

from dgd_operator.controllerkit.kubeapi import Manifest, TransientError
from dgd_operator.controllerkit.workers import run_all
from dgd_operator.reconcile.controller import Controller
from dgd_operator.reconcile.report import rejection_mark
from dgd_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit


def _written(controller: Controller, key: tuple[str, str] = KEY) -> dict[str, Any]:
    status = controller.state.graphs[key].written_status
    assert status is not None
    return status


async def test_converged_graph_costs_no_writes_even_for_a_freshcontroller_for() -> None:
    controller, view, client = controller_for(_dgd())
    await controller.reconcile(KEY)
    kinds = [c[0] for c in client.writes()]
    # Missing children are created with POSTs; status goes through apply.
    assert "apply/status" in kinds and kinds.count("create") >= 3
    # Nothing is written on the DGD itself; deliver our writes to the watch cache.
    assert not any(c[0] == "patch" for c in client.writes())
    deliver(view, client, controller)
    assert view.dgd_body is not None and view.dgd_body["status"]["state"] == "successful"

    client.calls.clear()
    await controller.reconcile(KEY)
    assert client.writes() == []

    # A new controller (operator restart) has no memory, and still writes nothing.
    fresh = Controller(OperatorSettings(workers=1))
    fresh_client = FakeKube()
    bind(fresh, view, fresh_client)
    await fresh.reconcile(KEY)
    assert fresh_client.writes() == []


async def test_transient_errors_are_retried_with_backoff_not_raised() -> None:
    controller, _, client = controller_for(_dgd())
    client.fail_with = TransientError(503, "ServiceUnavailable", "etcd leader changed")
    await controller.process(KEY)
    first = controller.queue.pending(KEY)
    assert first is not None and 0.5 < first <= 1.0  # base 1 s
    controller.queue.forget(KEY)  # the retry fires (an earlier pending one would win)
    await controller.process(KEY)
    second = controller.queue.pending(KEY)
    assert second is not None and 1.5 < second <= 2.0  # doubled
    assert controller.backoff.failures[KEY] == 2
    controller.queue.close()
    client.fail_with = None
    await controller.process(KEY)
    assert not controller.backoff.is_failing(KEY)


async def test_invalid_spec_is_reported_once_per_generation() -> None:
    controller, view, client = controller_for(_dgd(replicas=-1))
    await controller.reconcile(KEY)
    assert [c[0] for c in client.writes()] == ["apply/status", "create"]
    assert client.event_reasons() == ["InvalidSpec"]
    assert _written(controller)["state"] == "failed"
    message = _written(controller)["conditions"][0]["message"]
    assert "spec.components[1].replicas" in message  # named on the hub, as stored
    client.calls.clear()
    await controller.reconcile(KEY)
    assert client.calls == []
    # A spec change (new generation) is looked at again.
    assert view.dgd_body is not None
    view.dgd_body["metadata"]["generation"] = 2
    view.dgd_body["spec"]["services"]["worker"]["replicas"] = 1
    await controller.reconcile(KEY)
    assert client.written()  # the children are created now


def test_rejection_mark_ignores_status() -> None:
    body = _dgd()
    mark = rejection_mark(body)
    body["status"] = {"state": "failed"}
    assert rejection_mark(body) == mark
    body["metadata"]["annotations"] = {}
    body["metadata"]["annotations"]["nvidia.com/dynamo-discovery-backend"] = "etcd"
    assert rejection_mark(body) != mark


async def test_removed_service_children_are_deleted_and_the_graph_stays_successful() -> None:
    controller, view, client = controller_for(_dgd())
    await controller.reconcile(KEY)
    deliver(view, client, controller)
    owned(view)
    client.calls.clear()
    assert view.dgd_body is not None
    del view.dgd_body["spec"]["services"]["worker"]
    view.dgd_body["metadata"]["generation"] = 2
    await controller.reconcile(KEY)
    service, deployment = sorted(c[1] for c in client.calls if c[0] == "delete")
    assert service == "g-worker"
    assert re.fullmatch(r"g-worker-[0-9a-f]{8}", deployment)  # the worker generation
    status = _written(controller)
    assert status["state"] == "successful" and set(status["components"]) == {"Frontend"}


async def test_single_to_multinode_flip_rebuilds_workloads_and_creates_the_mpi_secret() -> None:
    controller, view, client = controller_for(_dgd())
    await controller.reconcile(KEY)
    deliver(view, client, controller)
    owned(view)
    client.calls.clear()
    assert view.dgd_body is not None
    view.dgd_body["spec"]["services"]["worker"]["multinode"] = {"nodeCount": 2}
    view.dgd_body["metadata"]["generation"] = 2
    await controller.reconcile(KEY)
    written = set(client.written())
    assert {"g-worker-0-ldr", "g-worker-0-wkr", "g-worker-nodes"} <= written
    # The worker generation's Deployment goes (the Service is re-applied); multinode workers
    # update in place, without generations.
    assert [c for c in client.calls if c[0] == "delete" and c[1].startswith("g-worker-")]
    assert ("get", "mpi-run-ssh-secret") in client.calls and "Secret" in client.created_kinds()
    status = _written(controller)
    assert status["components"]["worker"]["componentKind"] == "StatefulSet"
    assert status["components"]["worker"]["groups"] == [
        {"index": 0, "name": "g-worker-0", "phase": "Starting", "restarts": 0, "restartTimes": []}
    ]
    # Looked up again only once the check expired (test_reconcile_stale_memory covers that).
    client.calls.clear()
    await controller.reconcile(KEY)
    assert ("get", "mpi-run-ssh-secret") not in client.calls


async def test_too_long_dynamo_namespace_is_rejected_before_any_write() -> None:
    body = _dgd()
    body["metadata"]["name"] = "g" * 40
    body["metadata"]["namespace"] = "n" * 30
    controller, _, client = controller_for(body)
    key = ("n" * 30, "g" * 40)
    await controller.reconcile(key)
    assert [c[0] for c in client.writes()] == ["apply/status", "create"]
    message = _written(controller, key)["conditions"][0]["message"]
    assert (
        message.startswith("metadata.name: the Dynamo namespace")
        and "at most 32 characters" in message
    )


class GatedClient(FakeKube):
    """Holds every child write (create or apply) until `release` is set, counting how many are
    in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = asyncio.Event()
        self.order: list[str] = []
        self.waiting: list[str] = []
        self.fail_name: str | None = None

    async def _gate(self, manifest: Manifest) -> None:
        self.in_flight += 1
        self.waiting.append(manifest["kind"])
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        self.order.append(manifest["kind"])
        if manifest["metadata"]["name"] == self.fail_name and manifest["kind"] == "Service":
            raise TransientError(503, "ServiceUnavailable", "etcd leader changed")

    async def apply(
        self, manifest: Manifest, *, subresource: str | None = None, force: bool = True
    ) -> Manifest:
        if not subresource:
            await self._gate(manifest)
        return await super().apply(manifest, subresource=subresource, force=force)

    async def create(self, manifest: Manifest) -> Manifest:
        if manifest["kind"] != "Event":
            await self._gate(manifest)
        return await super().create(manifest)


def _gated(body: dict[str, Any]) -> tuple[Controller, FakeView, GatedClient]:
    client = GatedClient()
    controller, view, _ = controller_for(body, client=client)
    return controller, view, client


async def _settle() -> None:
    """Let every task run until it blocks (the fakes never touch the network)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_children_are_applied_concurrently_workloads_after_everything_they_use() -> None:
    controller, _, client = _gated(_dgd())
    reconcile = asyncio.create_task(controller.reconcile(KEY))
    # Wave 1: every non-workload child at once, and no workload yet.
    await _settle()
    assert client.in_flight == len(client.waiting) >= 2
    assert "Service" in client.waiting and not {"Deployment", "StatefulSet"} & set(client.waiting)
    client.release.set()
    outcome = await reconcile
    kinds = client.order
    first_workload = min(i for i, kind in enumerate(kinds) if kind in {"Deployment", "StatefulSet"})
    assert all(kind in {"Deployment", "StatefulSet"} for kind in kinds[first_workload:])
    assert outcome.applied == len(kinds)
    # Becoming ready is the Ready condition's transition; the only Event is the one naming what was created.
    assert _written(controller)["state"] == "successful"
    assert client.event_reasons() == ["Created"]


async def test_a_failed_apply_fails_the_reconcile_after_its_wave_and_keeps_the_others() -> None:
    controller, _, client = _gated(_dgd())
    client.fail_name = "g-worker"
    client.release.set()
    with pytest.raises(TransientError):
        await controller.reconcile(KEY)
    assert "Deployment" not in client.order  # wave 2 never started
    assert "g-frontend" in client.written()  # its wave-mate went through and is remembered
    assert any(ck[2] == "g-frontend" for ck in controller.state.records["ns"])
    # The retry applies only what is still missing (the recorded Service is not sent again).
    client.fail_name = None
    client.calls.clear()
    await controller.reconcile(KEY)
    assert client.written().count("g-worker") == 1  # its Service
    assert [n for n in client.written() if re.fullmatch(r"g-worker-\w{8}", n)]  # its generation
    assert client.written().count("g-frontend") == 1  # only the Deployment


async def test_run_all_awaits_every_call_and_raises_the_first_failure_in_order() -> None:
    finished: list[str] = []

    async def step(name: str, delay: int, error: Exception | None = None) -> str:
        for _ in range(delay):
            await asyncio.sleep(0)
        finished.append(name)
        if error is not None:
            raise error
        return name

    assert await run_all([step("a", 2), step("b", 0)]) == ["a", "b"]
    finished.clear()
    with pytest.raises(KeyError):
        await run_all(
            [
                step("slow", 5),
                step("first", 3, KeyError("first")),
                step("fast", 0, ValueError("fast")),
            ]
        )
    assert sorted(finished) == ["fast", "first", "slow"]  # nothing was left running
    assert await run_all([]) == []


async def test_a_graph_written_at_v1alpha1_without_a_frontend_image_is_reconciled_from_the_hub() -> (
    None
):
    # Stored as v1beta1, it would break Dynamo's v1beta1 image rule, which only admission
    # applies (to requests written at v1beta1); the reconcile acts on what is stored.
    body = _dgd()
    del body["spec"]["services"]["Frontend"]["extraPodSpec"]
    controller, _, client = controller_for(body)
    await controller.reconcile(KEY)
    assert "InvalidSpec" not in client.event_reasons()
    assert set(_written(controller)["components"]) == {"Frontend", "worker"}
