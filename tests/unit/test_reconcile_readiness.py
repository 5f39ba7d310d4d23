"""Readiness of Deployments/StatefulSets and the aggregated DGD status (Dynamo §4.2)."""

from __future__ import annotations

from typing import Any

import pytest

from dgd_operator.reconcile.readiness import (
    deployment_readiness,
    graph_readiness,
    statefulset_readiness,
)

pytestmark = pytest.mark.unit


def _deploy(
    name: str = "g-worker",
    *,
    replicas: int = 2,
    generation: int = 3,
    status: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    ready = {
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [{"type": "Available", "status": "True"}],
    }
    ready.update(status or {})
    ready.update(fields)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "generation": generation,
            "labels": {"nvidia.com/dynamo-component": "worker"},
        },
        "spec": {"replicas": replicas},
        "status": ready,
    }


@pytest.mark.parametrize(
    ("overrides", "ready", "reason"),
    [
        pytest.param({}, True, "", id="ready"),
        pytest.param(
            {"observedGeneration": 2},
            False,
            "rollout not yet observed",
            id="generation not observed",
        ),
        pytest.param({"updatedReplicas": 1}, False, "1/2 replicas updated", id="rolling"),
        pytest.param({"availableReplicas": 1}, False, "1/2 replicas available", id="not available"),
        pytest.param(
            {"replicas": 3}, False, "1 old replicas still terminating", id="surplus old pod"
        ),
        pytest.param(
            {
                "conditions": [
                    {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}
                ]
            },
            False,
            "Available condition is not True: MinimumReplicasUnavailable",
            id="condition false",
        ),
    ],
)
def test_deployment_readiness(overrides: dict[str, Any], ready: bool, reason: str) -> None:
    result = deployment_readiness(_deploy(status=overrides))
    assert result.ready is ready
    assert result.reason.startswith(reason)


def test_zero_replicas_and_paused() -> None:
    zero = _deploy(replicas=0, availableReplicas=0)
    zero["status"] = {}
    assert deployment_readiness(zero).ready
    paused = _deploy()
    paused["spec"]["paused"] = True
    assert deployment_readiness(paused).reason == "Deployment is paused"


def test_statefulset_readiness_counts_ready_pods() -> None:
    sts = _deploy(replicas=1)
    sts["kind"] = "StatefulSet"
    assert statefulset_readiness(sts).ready
    sts["status"]["readyReplicas"] = 0
    assert statefulset_readiness(sts).reason == "0/1 pods ready"


def test_graph_readiness_lists_not_ready_resources_sorted() -> None:
    desired = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "g-frontend"}},
        _deploy("g-worker"),
        _deploy("g-frontend", replicas=1),
    ]
    live = {
        ("Service", "g-frontend"): desired[0],
        ("Deployment", "g-worker"): _deploy("g-worker", availableReplicas=1),
    }
    result = graph_readiness(desired, live, {"Frontend": ["g-frontend"], "worker": ["g-worker"]})
    assert result.state == "pending"
    assert result.message == (
        "Resources not ready: g-frontend: resource not found; g-worker: 1/2 replicas available"
    )
    assert result.services["worker"] == {
        "componentKind": "Deployment",
        "componentNames": ["g-worker"],
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 1,
    }
    live[("Deployment", "g-worker")] = _deploy("g-worker")
    live[("Deployment", "g-frontend")] = _deploy("g-frontend", replicas=1)
    done = graph_readiness(desired, live)
    assert (done.state, done.reason, done.message) == (
        "successful",
        "all_resources_are_ready",
        "All resources are ready",
    )


def test_multinode_groups_count_as_replicas() -> None:
    def sts(name: str, replicas: int, ready: int) -> dict[str, Any]:
        obj = _deploy(name, replicas=replicas, readyReplicas=ready)
        obj["kind"] = "StatefulSet"
        return obj

    desired = [
        sts("g-dec-0-ldr", 1, 1),
        sts("g-dec-0-wkr", 1, 1),
        sts("g-dec-1-ldr", 1, 1),
        sts("g-dec-1-wkr", 1, 0),
    ]
    live = {("StatefulSet", o["metadata"]["name"]): o for o in desired}
    result = graph_readiness(desired, live, {"dec": [o["metadata"]["name"] for o in desired]})
    assert result.services["dec"]["componentKind"] == "StatefulSet"
    assert (result.services["dec"]["replicas"], result.services["dec"]["readyReplicas"]) == (2, 1)
    assert result.state == "pending"


# --- Ready reasons that say why ------------------------------------------------------------------


def _pod(
    name: str,
    component: str = "worker",
    *,
    node: str | None = "n1",
    scheduled: dict[str, Any] | None = None,
    containers: list[dict[str, Any]] | None = None,
    ready_message: str | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    """A pod summary as the operator's watch keeps it (`groups.pod_summary`)."""
    conditions: list[dict[str, Any]] = []
    if scheduled is not None:
        conditions.append({"type": "PodScheduled", **scheduled})
    if ready_message is not None:
        conditions.append({"type": "Ready", "status": "False", "message": ready_message})
    return {
        "metadata": {
            "name": name,
            "labels": {"nvidia.com/dynamo-component": component},
            "deletionTimestamp": "2026-01-01T00:00:00Z" if deleting else None,
        },
        "spec": {"nodeName": node},
        "status": {"conditions": conditions, "containerStatuses": containers or []},
    }


UNSCHEDULABLE = {
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
}
CRASHING = {
    "name": "main",
    "restartCount": 3,
    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting"}},
    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
}
PULLING = {
    "name": "main",
    "state": {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}},
}


@pytest.mark.parametrize(
    ("live_status", "pods", "reason", "detail"),
    [
        pytest.param(
            {"availableReplicas": 0, "readyReplicas": 0},
            [_pod("g-worker-a", node=None, scheduled=UNSCHEDULABLE)],
            "insufficient_capacity",
            " (pod g-worker-a: 0/4 nodes are available: 4 Insufficient nvidia.com/gpu.)",
            id="unschedulable",
        ),
        pytest.param(
            {"availableReplicas": 1},
            [_pod("g-worker-b", containers=[CRASHING]), _pod("g-worker-a")],
            "pods_not_ready",
            " (pod g-worker-b container main: CrashLoopBackOff, last exit 137 (OOMKilled))",
            id="crash-loop-without-the-back-off-message",
        ),
        pytest.param(
            {"availableReplicas": 1},
            [_pod("g-worker-a", containers=[PULLING])],
            "pods_not_ready",
            ' (pod g-worker-a container main: ImagePullBackOff: Back-off pulling image "x")',
            id="image-pull",
        ),
        pytest.param(
            {"availableReplicas": 1},
            [_pod("g-worker-a", ready_message="containers with unready status: [main]")],
            "pods_not_ready",
            " (pod g-worker-a: containers with unready status: [main])",
            id="not-ready",
        ),
        pytest.param(
            {"updatedReplicas": 1, "availableReplicas": 1},
            [_pod("g-worker-a", containers=[CRASHING])],
            "updating",
            " (pod g-worker-a container main: CrashLoopBackOff, last exit 137 (OOMKilled))",
            id="rollout",
        ),
        pytest.param(
            {"availableReplicas": 1},
            [
                _pod("g-worker-a", containers=[CRASHING]),
                _pod("g-worker-b", node=None, scheduled=UNSCHEDULABLE),
            ],
            "insufficient_capacity",
            " (pod g-worker-b: 0/4 nodes are available: 4 Insufficient nvidia.com/gpu.)",
            id="scheduling-first",
        ),
        pytest.param(
            {"availableReplicas": 1},
            [_pod("g-worker-a", containers=[CRASHING], deleting=True), _pod("x", "other")],
            "pods_not_ready",
            "",
            id="deleting-and-other-pods-say-nothing",
        ),
    ],
)
def test_not_ready_reason_class_and_first_pod_cause(
    live_status: dict[str, Any], pods: list[dict[str, Any]], reason: str, detail: str
) -> None:
    desired = [_deploy("g-worker")]
    live = {("Deployment", "g-worker"): _deploy("g-worker", status=live_status)}
    result = graph_readiness(desired, live, {"worker": ["g-worker"]}, pods)
    assert result.reason == reason
    summary = deployment_readiness(live[("Deployment", "g-worker")]).reason
    assert result.message == f"Resources not ready: g-worker: {summary}{detail}"


def test_components_not_ready_for_different_reasons_are_mixed() -> None:
    decode = _deploy("g-decode")
    decode["metadata"]["labels"] = {"nvidia.com/dynamo-component": "decode"}
    desired = [_deploy("g-worker"), decode]
    live = {
        ("Deployment", "g-worker"): _deploy("g-worker", availableReplicas=1),
        ("Deployment", "g-decode"): {
            **decode,
            "status": {**decode["status"], "updatedReplicas": 1},
        },
    }
    pods = [_pod("g-worker-a", node=None, scheduled=UNSCHEDULABLE)]
    result = graph_readiness(desired, live, None, pods)
    assert result.reason == "mixed_not_ready_reasons"
    only_missing = graph_readiness(
        [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}], {}, None, []
    )
    assert only_missing.reason == "some_resources_are_not_ready"


def test_scheduled_replicas_count_bound_pods_and_whole_groups() -> None:
    desired = [_deploy("g-worker", replicas=3)]
    live = {("Deployment", "g-worker"): _deploy("g-worker", replicas=3)}
    pods = [
        _pod("g-worker-a"),
        _pod("g-worker-b", node=None, scheduled=UNSCHEDULABLE),
        _pod("g-worker-c", deleting=True),
    ]
    assert graph_readiness(desired, live, None, pods).services["worker"]["scheduledReplicas"] == 1
    assert "scheduledReplicas" not in graph_readiness(desired, live).services["worker"]

    def sts(name: str, replicas: int) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name, "generation": 1,
                         "labels": {"nvidia.com/dynamo-component": "big"}},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": 1, "replicas": replicas},
        }  # fmt: skip

    sets = [
        sts("g-big-0-ldr", 1),
        sts("g-big-0-wkr", 2),
        sts("g-big-1-ldr", 1),
        sts("g-big-1-wkr", 2),
    ]
    live_sets = {("StatefulSet", s["metadata"]["name"]): s for s in sets}
    group_pods = [
        _pod("g-big-0-ldr-0", "big"), _pod("g-big-0-wkr-1", "big"), _pod("g-big-0-wkr-2", "big"),
        _pod("g-big-1-ldr-0", "big"), _pod("g-big-1-wkr-1", "big"),
        _pod("g-big-1-wkr-2", "big", node=None, scheduled=UNSCHEDULABLE),
    ]  # fmt: skip
    result = graph_readiness(
        sets, live_sets, {"big": [s["metadata"]["name"] for s in sets]}, group_pods
    )
    assert result.services["big"]["scheduledReplicas"] == 1
