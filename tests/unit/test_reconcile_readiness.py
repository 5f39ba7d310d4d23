"""Readiness of Deployments/StatefulSets and the aggregated DGD status (Dynamo §4.2)."""

from __future__ import annotations

from typing import Any

import pytest

from dgd_operator.reconcile.readiness import (
    deployment_readiness,
    graph_readiness,
    ready_condition,
    statefulset_readiness,
    status_differs,
)

pytestmark = pytest.mark.unit


def _deploy(
    name: str = "g-worker", *, replicas: int = 2, generation: int = 3, status: dict[str, Any] | None = None, **fields: Any
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
        "metadata": {"name": name, "generation": generation, "labels": {"nvidia.com/dynamo-component": "worker"}},
        "spec": {"replicas": replicas},
        "status": ready,
    }


@pytest.mark.parametrize(
    ("overrides", "ready", "reason"),
    [
        pytest.param({}, True, "", id="ready"),
        pytest.param({"observedGeneration": 2}, False, "rollout not yet observed", id="generation not observed"),
        pytest.param({"updatedReplicas": 1}, False, "1/2 replicas updated", id="rolling"),
        pytest.param({"availableReplicas": 1}, False, "1/2 replicas available", id="not available"),
        pytest.param({"replicas": 3}, False, "1 old replicas still terminating", id="surplus old pod"),
        pytest.param(
            {"conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]},
            False, "Available condition is not True: MinimumReplicasUnavailable", id="condition false",
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
    live = {("Service", "g-frontend"): desired[0], ("Deployment", "g-worker"): _deploy("g-worker", availableReplicas=1)}
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
    assert (done.state, done.reason, done.message) == ("successful", "all_resources_are_ready", "All resources are ready")


def test_multinode_groups_count_as_replicas() -> None:
    def sts(name: str, replicas: int, ready: int) -> dict[str, Any]:
        obj = _deploy(name, replicas=replicas, readyReplicas=ready)
        obj["kind"] = "StatefulSet"
        return obj

    desired = [sts("g-dec-0-ldr", 1, 1), sts("g-dec-0-wkr", 1, 1), sts("g-dec-1-ldr", 1, 1), sts("g-dec-1-wkr", 1, 0)]
    live = {("StatefulSet", o["metadata"]["name"]): o for o in desired}
    result = graph_readiness(desired, live, {"dec": [o["metadata"]["name"] for o in desired]})
    assert result.services["dec"]["componentKind"] == "StatefulSet"
    assert (result.services["dec"]["replicas"], result.services["dec"]["readyReplicas"]) == (2, 1)
    assert result.state == "pending"


def test_ready_condition_keeps_transition_time_and_status_compare_ignores_it() -> None:
    old = [{"type": "Ready", "status": "True", "reason": "r", "message": "m", "lastTransitionTime": "T0"}]
    same = ready_condition(ready=True, reason="r", message="m", previous=old, now="T1", observed_generation=None)
    assert same["lastTransitionTime"] == "T0"
    flipped = ready_condition(ready=False, reason="r", message="m", previous=old, now="T1", observed_generation=None)
    assert flipped["lastTransitionTime"] == "T1"
    current = {"state": "successful", "conditions": old}
    assert not status_differs(current, {"state": "successful", "conditions": [dict(old[0], lastTransitionTime="T9")]})
    assert status_differs(current, {"state": "pending", "conditions": old})
