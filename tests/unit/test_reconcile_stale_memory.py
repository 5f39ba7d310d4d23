"""Per-graph memory must not outlive what it remembers (review F2, Appendix B).

Each scenario failed on the controller before `reconcile/state.py` (checked on e52c501): a
graph re-created under the same name inherited its predecessor's memory (no replica sync, no
Scaled Event), and namespace-wide objects "created once" were remembered per process, so a
deleted MPI Secret or planner ServiceAccount never came back until the operator restarted.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.reconcile_fakes import KEY, FakeKube, controller_for, dgd

from dgd_operator.reconcile.controller import Controller
from dgd_operator.reconcile.state import SHARED_OBJECT_RECHECK_SECONDS, ControllerState
from dgd_operator.reconcile.sync import child_key
from dgd_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

ADAPTER_KEY = ("nvidia.com/v1beta1", "DynamoGraphDeploymentScalingAdapter", "g-worker")


def _adapter(owner_uid: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeploymentScalingAdapter",
        "metadata": {
            "name": "g-worker",
            "namespace": "ns",
            "uid": f"a-{owner_uid}",
            "ownerReferences": [{"uid": owner_uid}],
        },
        "spec": {"replicas": replicas},
    }


def _dgd_patches(client: FakeKube) -> list[tuple[str, str]]:
    return [call for call in client.calls if call == ("patch", "g")]


async def test_recreated_graph_gets_replicas_synced_from_its_adapter() -> None:
    controller, view, client = controller_for(dgd(scalingAdapter={"enabled": True}, replicas=1))
    view.objects[ADAPTER_KEY] = _adapter("u1", 2)
    await controller.reconcile(KEY)
    assert _dgd_patches(client) == [("patch", "g")]
    assert client.event_reasons().count("Scaled") == 1

    # The graph is deleted: the next reconcile finds nothing, and the garbage collector removes
    # every child (the watch delivers DELETED for each).
    view.dgd_body = None
    await controller.reconcile(KEY)
    for child in client.applied:
        controller.child_deleted("ns", child_key(child))
    client.applied.clear()

    # Re-created under the same name (new uid), its new adapter scaled to the old count.
    body = dgd(scalingAdapter={"enabled": True}, replicas=1)
    body["metadata"]["uid"] = "u2"
    view.dgd_body, view.objects = body, {ADAPTER_KEY: _adapter("u2", 2)}
    client.calls.clear()
    client.events.clear()
    await controller.reconcile(KEY)
    assert _dgd_patches(client) == [("patch", "g")]
    assert client.event_reasons().count("Scaled") == 1
    [deployment] = [
        o
        for o in client.applied
        if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("g-worker-")
    ]
    assert deployment["spec"]["replicas"] == 2


async def test_deleted_mpi_secret_is_recreated_without_an_operator_restart() -> None:
    now = [1000.0]
    controller = Controller(
        OperatorSettings(workers=1), state=ControllerState(clock=lambda: now[0])
    )
    controller, _, client = controller_for(dgd(multinode={"nodeCount": 2}), controller=controller)
    await controller.reconcile(KEY)
    assert client.created_kinds().count("Secret") == 1
    client.existing[("Secret", "mpi-run-ssh-secret")] = {"kind": "Secret"}

    client.calls.clear()
    await controller.reconcile(KEY)
    assert ("get", "mpi-run-ssh-secret") not in client.calls  # checked recently: trusted

    del client.existing[("Secret", "mpi-run-ssh-secret")]  # someone deletes it
    now[0] += SHARED_OBJECT_RECHECK_SECONDS
    client.calls.clear()
    await controller.reconcile(KEY)
    assert client.created_kinds().count("Secret") == 2  # created again


def _with_planner() -> dict[str, Any]:
    body = dgd()
    body["spec"]["services"]["Planner"] = {
        "componentType": "planner",
        "extraPodSpec": {"mainContainer": {"image": "planner:1"}},
    }
    return body


async def test_deleted_planner_service_account_is_recreated_without_an_operator_restart() -> None:
    controller, view, client = controller_for(_with_planner())
    await controller.reconcile(KEY)
    assert ("apply", "planner-serviceaccount") in client.calls
    # The watch delivers it: from now on the cache answers, without a GET.
    view.shared.add(("ServiceAccount", "planner-serviceaccount"))
    client.existing[("ServiceAccount", "planner-serviceaccount")] = {"kind": "ServiceAccount"}
    client.calls.clear()
    await controller.reconcile(KEY)
    assert ("get", "planner-serviceaccount") not in client.calls
    assert ("apply", "planner-serviceaccount") not in client.calls

    # Deleted by someone: the watch drops it from the cache and reports the deletion.
    view.shared.clear()
    del client.existing[("ServiceAccount", "planner-serviceaccount")]
    controller.shared_deleted("ns", "ServiceAccount", "planner-serviceaccount")
    client.calls.clear()
    await controller.reconcile(KEY)
    assert ("apply", "planner-serviceaccount") in client.calls


async def test_a_shared_account_the_watch_has_not_delivered_yet_is_not_applied_twice() -> None:
    controller, _, client = controller_for(_with_planner())
    await controller.reconcile(KEY)
    client.existing[("ServiceAccount", "planner-serviceaccount")] = {"kind": "ServiceAccount"}
    client.calls.clear()
    await controller.reconcile(KEY)  # the cache still lacks it: trusted from our own check
    assert ("apply", "planner-serviceaccount") not in client.calls
    assert ("get", "planner-serviceaccount") not in client.calls
