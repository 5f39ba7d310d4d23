"""Gang placement in the reconcile: discovery, PodGroups kept in step with groups, status."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.reconcile_fakes import KEY, FakeKube, controller_for, deliver, owned
from tests.unit.reconcile_fakes import dgd as _dgd

from dgd_operator.api.constants import LABEL_COMPONENT, LABEL_GROUP_INDEX, LABEL_ROLE
from dgd_operator.reconcile.controller import Controller

pytestmark = pytest.mark.unit

DISCOVERY_PATH = "/apis/scheduling.k8s.io/v1beta1"
SERVED = {
    "kind": "APIResourceList",
    "groupVersion": "scheduling.k8s.io/v1beta1",
    "resources": [
        {
            "name": "podgroups",
            "kind": "PodGroup",
            "namespaced": True,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        }
    ],
}


def _graph(replicas: int = 2) -> dict[str, Any]:
    return _dgd(multinode={"nodeCount": 2}, replicas=replicas)


def _served_client() -> FakeKube:
    client = FakeKube()
    client.discovery[DISCOVERY_PATH] = SERVED
    return client


def _condition(controller: Controller, kind: str) -> dict[str, Any] | None:
    status = controller.state.graphs[KEY].written_status or {}
    return next((c for c in status.get("conditions", []) if c["type"] == kind), None)


def _applied(client: FakeKube, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in client.applied if o["kind"] == kind}


async def test_served_api_gives_every_group_a_pod_group_and_its_pods_join_it() -> None:
    controller, view, client = controller_for(_graph(), client=_served_client())
    await controller.reconcile(KEY)
    groups = _applied(client, "PodGroup")
    assert set(groups) == {"g-worker-0", "g-worker-1"}
    assert groups["g-worker-0"]["spec"]["schedulingPolicy"] == {"gang": {"minCount": 2}}
    statefulsets = _applied(client, "StatefulSet")
    assert statefulsets["g-worker-1-wkr"]["spec"]["template"]["spec"]["schedulingGroup"] == {
        "podGroupName": "g-worker-1"
    }
    condition = _condition(controller, "GangPlacement")
    assert condition is not None and condition["status"] == "True"
    assert condition["reason"] == "PodGroupsCreated"

    # Converged: no write, no list, and discovery is not asked again within its recheck time.
    deliver(view, client, controller)
    owned(view)
    client.calls.clear()
    await controller.reconcile(KEY)
    assert client.writes() == []
    assert ("list", "PodGroup") not in client.calls
    assert ("get", DISCOVERY_PATH) not in client.calls


async def test_removed_groups_lose_their_pod_groups_and_a_node_count_change_patches_min_count() -> (
    None
):
    controller, view, client = controller_for(_graph(), client=_served_client())
    await controller.reconcile(KEY)
    for name, group in _applied(client, "PodGroup").items():
        group["metadata"]["ownerReferences"] = [{"uid": "u1"}]
        client.existing[("PodGroup", name)] = group
    deliver(view, client, controller)
    owned(view)
    client.calls.clear()

    assert view.dgd_body is not None
    worker = view.dgd_body["spec"]["services"]["worker"]
    worker["replicas"], worker["multinode"] = 1, {"nodeCount": 3}
    view.dgd_body["metadata"]["generation"] = 2
    await controller.reconcile(KEY)
    assert ("list", "PodGroup") in client.calls
    assert ("delete", "g-worker-1") in client.calls
    assert ("delete", "g-worker-0") not in client.calls
    (group,) = _applied(client, "PodGroup").values()
    assert group["spec"]["schedulingPolicy"] == {"gang": {"minCount": 3}}

    # The set of groups is unchanged from now on: no more listing.
    deliver(view, client, controller)
    client.calls.clear()
    await controller.reconcile(KEY)
    assert ("list", "PodGroup") not in client.calls


async def test_without_the_api_groups_reconcile_and_the_status_says_why() -> None:
    controller, _, client = controller_for(_graph())
    await controller.reconcile(KEY)
    assert _applied(client, "PodGroup") == {}
    assert all(
        "schedulingGroup" not in sts["spec"]["template"]["spec"]
        for sts in _applied(client, "StatefulSet").values()
    )
    condition = _condition(controller, "GangPlacement")
    assert condition is not None and condition["status"] == "False"
    assert condition["reason"] == "GangSchedulingUnavailable"
    assert "1.37" in condition["message"] and "GenericWorkload" in condition["message"]
    assert ("get", DISCOVERY_PATH) in client.calls


async def test_a_graph_without_multinode_services_never_asks_discovery() -> None:
    controller, _, client = controller_for(_dgd())
    await controller.reconcile(KEY)
    assert ("get", DISCOVERY_PATH) not in client.calls
    assert _condition(controller, "GangPlacement") is None


async def test_a_waiting_group_tells_why_in_the_ready_message() -> None:
    controller, view, client = controller_for(_graph(replicas=1), client=_served_client())
    unschedulable = "pod group is unschedulable, minCount (2) cannot be satisfied: 1 scheduled"
    for name, role in (("g-worker-0-ldr-0", "leader"), ("g-worker-0-wkr-1", "worker")):
        view.pods.append(
            {
                "metadata": {
                    "name": name,
                    "uid": f"uid-{name}",
                    "labels": {LABEL_COMPONENT: "worker", LABEL_GROUP_INDEX: "0", LABEL_ROLE: role},
                },
                "status": {
                    "phase": "Pending",
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": unschedulable,
                        }
                    ],
                },
            }
        )
    client.ready = False
    await controller.reconcile(KEY)
    ready = _condition(controller, "Ready")
    assert ready is not None and ready["status"] == "False"
    assert f"group g-worker-0: 2/2 pods cannot be scheduled: {unschedulable}" in ready["message"]


async def test_groups_left_to_another_scheduler_get_no_pod_group_and_the_status_says_so() -> None:
    body = _graph()
    body["metadata"]["annotations"] = {"nvidia.com/volcano-queue": "gpu"}
    controller, _, client = controller_for(body, client=_served_client())
    await controller.reconcile(KEY)
    assert _applied(client, "PodGroup") == {}
    condition = _condition(controller, "GangPlacement")
    assert condition is not None and condition["status"] == "False"
    assert condition["reason"] == "PlacedByOtherScheduler" and "volcano" in condition["message"]


def _pod(
    name: str, role: str, pod_group: str | None, *, terminating: bool = False
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "labels": {LABEL_COMPONENT: "worker", LABEL_GROUP_INDEX: "0", LABEL_ROLE: role},
            "deletionTimestamp": "2026-01-01T00:00:00Z" if terminating else None,
        },
        "spec": {"schedulingGroup": {"podGroupName": pod_group} if pod_group else None},
        "status": {"phase": "Running"},
    }


async def test_pods_of_a_previous_pod_group_are_restarted_so_the_group_joins_the_new_one() -> None:
    body = _graph(replicas=1)
    body["spec"]["priorityClassName"] = "high"
    controller, view, client = controller_for(body, client=_served_client())
    view.pods = [
        _pod("g-worker-0-ldr-0", "leader", "g-worker-0"),  # before the priority was set
        _pod("g-worker-0-wkr-1", "worker", None),  # before gang placement was on
        _pod("g-worker-0-wkr-2", "worker", "g-worker-0", terminating=True),
    ]
    await controller.reconcile(KEY)
    (group,) = _applied(client, "PodGroup")
    assert (
        group.startswith("g-worker-0-")
        and _applied(client, "PodGroup")[group]["spec"]["priorityClassName"] == "high"
    )
    deleted = [name for verb, name in client.calls if verb == "delete"]
    assert deleted == ["g-worker-0-ldr-0", "g-worker-0-wkr-1"]
    assert "GroupRestart" in client.event_reasons()

    # Pods that joined the desired PodGroup are left alone.
    view.pods = [
        _pod("g-worker-0-ldr-0", "leader", group),
        _pod("g-worker-0-wkr-1", "worker", group),
    ]
    client.calls.clear()
    await controller.reconcile(KEY)
    assert [name for verb, name in client.calls if verb == "delete"] == []


async def test_a_desired_pod_group_still_being_deleted_is_created_again_once_gone() -> None:
    controller, view, client = controller_for(_graph(replicas=1), client=_served_client())
    await controller.reconcile(KEY)
    ((name, applied),) = _applied(client, "PodGroup").items()
    deliver(view, client, controller)
    owned(view)
    # PodGroups are not watched: the watch cache never holds them.
    view.objects = {k: v for k, v in view.objects.items() if k[1] != "PodGroup"}
    # The group was removed and added back before its old PodGroup was released: the GET finds
    # it (our hash, our uid) still being deleted. Nothing to apply to it now...
    client.existing[("PodGroup", name)] = {
        **applied,
        "metadata": {**applied["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"},
    }
    client.calls.clear()
    await controller.reconcile(KEY)
    assert name not in client.written()
    # ...but once it is gone it is created again (not trusted to exist from our old record).
    del client.existing[("PodGroup", name)]
    client.calls.clear()
    await controller.reconcile(KEY)
    assert ("create", name) in client.calls
