"""Shaped simulated nodes on the real API server and scheduler: labels, spreads, taints and
extended resources are what the scheduler sees and acts on."""

from __future__ import annotations

import pytest
from tests.helpers import wait_for
from tests.integration.node_pools import POOL_KEY, AddNodes

from dgd_operator.dev.controlplane import ControlPlane
from dgd_operator.dev.kubelet import GPU_RESOURCE
from dgd_operator.dev.rest import JsonDict

pytestmark = pytest.mark.integration


def test_added_nodes_carry_their_shape(
    control_plane: ControlPlane, namespace: str, pool_nodes: AddNodes
) -> None:
    plans = pool_nodes(
        4,
        gpus_per_node=2,
        labels={"example.com/tier": "gold"},
        spreads={"example.com/rack": ["a", "b"]},
        extended_resources={"rdma/ib": "8"},
    )
    nodes = {plan.name: control_plane.rest.get(f"/api/v1/nodes/{plan.name}") for plan in plans}
    racks = [nodes[plan.name]["metadata"]["labels"]["example.com/rack"] for plan in plans]
    assert racks == ["a", "a", "b", "b"]
    for node in nodes.values():
        labels = node["metadata"]["labels"]
        assert labels["example.com/tier"] == "gold"
        assert labels[POOL_KEY] == namespace
        assert node["spec"]["taints"] == [
            {"key": POOL_KEY, "value": namespace, "effect": "NoSchedule"}
        ]
        assert node["status"]["allocatable"]["rdma/ib"] == "8"
        assert node["status"]["allocatable"][GPU_RESOURCE] == "2"
    # Every new node is Ready and none of them reuses a base node's pod range.
    base_ranges = {
        control_plane.rest.get(f"/api/v1/nodes/{name}")["spec"]["podCIDR"]
        for name in control_plane.node_names
    }
    assert not base_ranges & {n["spec"]["podCIDR"] for n in nodes.values()}


def test_extended_resource_and_taint_steer_the_scheduler(
    control_plane: ControlPlane, namespace: str, pool_nodes: AddNodes
) -> None:
    (with_ib,) = pool_nodes(1, extended_resources={"rdma/ib": "1"})
    pool_nodes(1)  # same pool, no rdma/ib
    toleration = {"key": POOL_KEY, "operator": "Equal", "value": namespace, "effect": "NoSchedule"}

    def pod(name: str, ib: int, tolerate: bool = True) -> JsonDict:
        resources = {"limits": {"rdma/ib": str(ib)}} if ib else {}
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "containers": [
                    {"name": "main", "image": "example.com/a:1", "resources": resources}
                ],
                "nodeSelector": {POOL_KEY: namespace},
                "tolerations": [toleration] if tolerate else [],
            },
        }

    rest = control_plane.rest
    path = f"/api/v1/namespaces/{namespace}/pods"
    rest.post(path, pod("needs-ib", 1))
    rest.post(path, pod("second-ib", 1))
    rest.post(path, pod("untolerated", 0, tolerate=False))

    def status(name: str) -> JsonDict:
        return rest.get(f"{path}/{name}")

    def scheduled_reason(name: str) -> str | None:
        for condition in status(name).get("status", {}).get("conditions") or []:
            if condition.get("type") == "PodScheduled":
                return str(condition.get("reason") or condition.get("status"))
        return None

    placed = wait_for(
        lambda: status("needs-ib") if status("needs-ib")["spec"].get("nodeName") else None,
        timeout=60,
        description="the rdma/ib pod bound",
    )
    assert placed["spec"]["nodeName"] == with_ib.name
    # One rdma/ib on the whole pool: the second such pod and the pod without the toleration
    # (only tainted nodes match its selector) wait, with the scheduler's reason.
    wait_for(
        lambda: (
            scheduled_reason("second-ib") == "Unschedulable"
            and scheduled_reason("untolerated") == "Unschedulable"
        ),
        timeout=60,
        description="both other pods marked Unschedulable",
    )
    assert not status("second-ib")["spec"].get("nodeName")
    assert not status("untolerated")["spec"].get("nodeName")


def test_a_node_the_other_thread_created_first_is_taken_as_it_is(
    control_plane: ControlPlane, pool_nodes: AddNodes
) -> None:
    # add_nodes and the kubelet's node loop both create a new node they find missing; the one
    # that loses the race gets AlreadyExists from the API server and must use the other's Node.
    [plan] = pool_nodes(1)
    kubelet = control_plane.kubelet
    assert kubelet is not None
    path = f"/api/v1/nodes/{plan.name}"
    node = kubelet._create_node(plan, path)  # the node exists: this is the losing side
    assert node["metadata"]["uid"] == control_plane.rest.get(path)["metadata"]["uid"]
