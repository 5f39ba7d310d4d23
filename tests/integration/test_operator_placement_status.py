"""Topology packing and Ready reasons that say why, on the real scheduler and API server.

Each test gets its own simulated 8-GPU nodes (`pool_nodes`, labelled and tainted for its
namespace) and its graphs' pods select and tolerate exactly those, so capacity and topology are
what the test says.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.helpers import wait_for
from tests.integration.node_pools import POOL_KEY, AddNodes
from tests.integration.operator_harness import (
    OperatorThread,
    dgd_path,
    dgd_status,
    running_operator,
    settled,
)

from dgd_operator.dev.controlplane import ControlPlane

pytestmark = pytest.mark.integration

RACK_KEY = "topology.kubernetes.io/rack"
Doc = dict[str, Any]


@pytest.fixture()
def operator(namespace: str) -> Iterator[OperatorThread]:
    """The operator, watching the test's namespace."""
    with running_operator(namespace) as running:
        yield running


def _on_pool(namespace: str, main: Doc, **pod: Any) -> Doc:
    """`extraPodSpec` that keeps the pods on the test's pool nodes."""
    return {
        "nodeSelector": {POOL_KEY: namespace},
        "tolerations": [
            {"key": POOL_KEY, "operator": "Equal", "value": namespace, "effect": "NoSchedule"}
        ],
        "mainContainer": main,
        **pod,
    }


def _graph(name: str, services: Doc, **spec: Any) -> Doc:
    return {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": name},
        "spec": {"backendFramework": "vllm", "services": services, **spec},
    }


def _worker(namespace: str, *, gpus: int, **service: Any) -> Doc:
    main = {"image": "example.com/vllm-runtime:1", "command": ["python3", "-m", "dynamo.vllm"]}
    return {
        "componentType": "worker",
        "resources": {"limits": {"gpu": str(gpus)}},
        "extraPodSpec": _on_pool(namespace, main),
        **service,
    }


def _pods(control_plane: ControlPlane, namespace: str, name: str) -> list[Doc]:
    items = control_plane.rest.get(
        f"/api/v1/namespaces/{namespace}/pods",
        labelSelector=f"nvidia.com/dynamo-graph-deployment-name={name}",
    ).get("items", [])
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _ready(control_plane: ControlPlane, namespace: str, name: str) -> Doc:
    conditions = dgd_status(control_plane.rest, namespace, name).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


def _condition(control_plane: ControlPlane, namespace: str, name: str, kind: str) -> Doc:
    conditions = dgd_status(control_plane.rest, namespace, name).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), {})


def test_every_group_packs_into_one_rack(
    control_plane: ControlPlane, namespace: str, pool_nodes: AddNodes, operator: OperatorThread
) -> None:
    plans = pool_nodes(4, spreads={RACK_KEY: ["a", "b"]})  # racks a, a, b, b: one group each
    rack_of = {
        plan.name: control_plane.rest.get(f"/api/v1/nodes/{plan.name}")["metadata"]["labels"][
            RACK_KEY
        ]
        for plan in plans
    }
    worker = _worker(
        namespace,
        gpus=8,
        replicas=2,
        multinode={"nodeCount": 2},
        topologyConstraint={"packDomain": "rack"},
    )
    worker["extraPodSpec"]["mainContainer"]["args"] = [
        "--model", "m", "--tensor-parallel-size", "8", "--pipeline-parallel-size", "2",
    ]  # fmt: skip
    control_plane.rest.post(
        dgd_path(namespace),
        _graph("packed", {"worker": worker}, topologyConstraint={"topologyProfile": "default"}),
    )
    wait_for(
        lambda: settled(control_plane.rest, namespace, "packed"),
        timeout=120,
        interval=0.5,
        description="the packed graph running",
    )
    racks: dict[str, set[str]] = {}
    for pod in _pods(control_plane, namespace, "packed"):
        group = (
            pod["metadata"]["labels"]["nvidia.com/dynamo-graph-deployment-name"]
            + "-"
            + (pod["metadata"]["labels"]["instance-id"])
        )
        racks.setdefault(group, set()).add(rack_of[pod["spec"]["nodeName"]])
    assert len(racks) == 2
    assert all(len(found) == 1 for found in racks.values()), racks
    assert set().union(*racks.values()) == {"a", "b"}
    levels = _condition(control_plane, namespace, "packed", "TopologyLevelsAvailable")
    assert (levels["status"], levels["reason"]) == ("True", "AllTopologyLevelsAvailable")


def test_a_pack_domain_no_node_carries_says_so(
    control_plane: ControlPlane, namespace: str, pool_nodes: AddNodes, operator: OperatorThread
) -> None:
    pool_nodes(1)
    worker = _worker(namespace, gpus=1, topologyConstraint={"packDomain": "block"})
    control_plane.rest.post(
        dgd_path(namespace),
        _graph("nowhere", {"worker": worker}, topologyConstraint={"topologyProfile": "default"}),
    )
    levels = wait_for(
        lambda: _condition(control_plane, namespace, "nowhere", "TopologyLevelsAvailable") or None,
        timeout=60,
        interval=0.5,
        description="the TopologyLevelsAvailable condition",
    )
    assert (levels["status"], levels["reason"]) == ("False", "TopologyLevelsUnavailable")
    assert "topology.kubernetes.io/block" in levels["message"]


def test_a_graph_that_cannot_schedule_says_insufficient_capacity_with_the_schedulers_message(
    control_plane: ControlPlane, namespace: str, pool_nodes: AddNodes, operator: OperatorThread
) -> None:
    pool_nodes(1)  # 8 GPUs; the worker asks for 16
    control_plane.rest.post(
        dgd_path(namespace), _graph("huge", {"worker": _worker(namespace, gpus=16)})
    )

    def verdict() -> tuple[str, int] | None:
        for pod in _pods(control_plane, namespace, "huge"):
            for condition in pod.get("status", {}).get("conditions") or []:
                if condition["type"] == "PodScheduled" and condition["status"] == "False":
                    return str(condition["message"]), operator.controller.reconciles
        return None

    message, reconciles_at_verdict = wait_for(
        verdict, timeout=60, interval=0.2, description="the scheduler's verdict on the pod"
    )
    ready = wait_for(
        lambda: (
            (r := _ready(control_plane, namespace, "huge")).get("reason") == "insufficient_capacity"
            and r
        ),
        timeout=30,
        interval=0.1,
        description="Ready to say insufficient_capacity",
    )
    assert message in ready["message"], ready
    assert "Insufficient nvidia.com/gpu" in ready["message"]
    status = dgd_status(control_plane.rest, namespace, "huge")
    assert status["services"]["worker"]["scheduledReplicas"] == 0
    print(
        "reconciles between the scheduler's verdict and the status saying it:",
        operator.controller.reconciles - reconciles_at_verdict,
    )


def test_a_crash_looping_container_shows_in_the_ready_message(
    control_plane: ControlPlane, namespace: str, pool_nodes: AddNodes, operator: OperatorThread
) -> None:
    pool_nodes(1)
    worker = _worker(
        namespace,
        gpus=1,
        extraPodMetadata={"annotations": {"dgd.dev/simulate": "crashloop"}},
    )
    control_plane.rest.post(dgd_path(namespace), _graph("crashy", {"worker": worker}))
    ready = wait_for(
        lambda: "CrashLoopBackOff" in str((r := _ready(control_plane, namespace, "crashy")).get(
            "message")) and r,
        timeout=60,
        interval=0.2,
        description="Ready to name the crash loop",
    )  # fmt: skip
    assert ready["status"] == "False" and ready["reason"] == "pods_not_ready"
    assert "last exit 1 (Error)" in ready["message"]
    status = dgd_status(control_plane.rest, namespace, "crashy")
    assert status["services"]["worker"]["scheduledReplicas"] == 1
