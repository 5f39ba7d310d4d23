"""The pure planners the reconcile steps run: adapters, change Events, restarts, groups, waves."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.reconcile_fakes import dgd

from dgd_operator.api.validation import parse_dgd
from dgd_operator.reconcile.notices import change_notices, only_replicas_changed, scale_change
from dgd_operator.reconcile.restart import plan_graph_restart, restart_notices
from dgd_operator.reconcile.scaling import plan_adapter_sync
from dgd_operator.reconcile.state import ControllerState
from dgd_operator.reconcile.steps.adapters import replica_patch
from dgd_operator.reconcile.steps.children import apply_waves
from dgd_operator.reconcile.steps.groups import pods_by_group
from dgd_operator.reconcile.sync import ApplyAction, with_hash

pytestmark = pytest.mark.unit

ADAPTER = ("nvidia.com/v1beta1", "DynamoGraphDeploymentScalingAdapter", "g-worker")


def _adapter(
    replicas: int, owner: str = "u1", status: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": "g-worker", "ownerReferences": [{"uid": owner}]},
        "spec": {"replicas": replicas},
        "status": status or {},
    }


SELECTOR = "nvidia.com/dynamo-component=worker,nvidia.com/dynamo-graph-deployment-name=g"


@pytest.mark.parametrize(
    ("adapter", "patched", "replicas", "patch", "scaled"),
    [
        (None, {}, {}, {}, 0),
        (_adapter(1), {}, {}, {}, 0),
        (_adapter(3), {}, {"worker": 3}, {"worker": {"replicas": 3}}, 1),
        (_adapter(3), {"worker": (3, 8)}, {"worker": 3}, {}, 0),
        (_adapter(3), {"worker": (3, 7)}, {"worker": 3}, {"worker": {"replicas": 3}}, 1),
        (_adapter(3), {"worker": (2, 8)}, {"worker": 3}, {"worker": {"replicas": 3}}, 1),
        (_adapter(3, owner="old-uid"), {}, {}, {}, 0),
    ],
    ids=[
        "no-adapter",
        "same-count",
        "scaled",
        "already-written-watch-behind",
        "edited-after-our-write",
        "adapter-moved-again",
        "adapter-of-a-previous-incarnation",
    ],
)
def test_plan_adapter_sync(
    adapter: dict[str, Any] | None,
    patched: dict[str, tuple[int, int]],
    replicas: dict[str, int],
    patch: dict[str, Any],
    scaled: int,
) -> None:
    model = parse_dgd(dgd(scalingAdapter={"enabled": True}, replicas=1))
    model.metadata.generation = 7  # the watch shows generation 7
    live = {ADAPTER: adapter} if adapter else {}
    sync = plan_adapter_sync(
        model, uid="u1", live=live, patched=patched, written_statuses={}, now="T"
    )
    assert (sync.replicas, sync.spec_patch, len(sync.scaled)) == (replicas, patch, scaled)


def test_adapter_status_is_written_once_per_change() -> None:
    model = parse_dgd(dgd(scalingAdapter={"enabled": True}, replicas=1))
    sync = plan_adapter_sync(
        model, uid="u1", live={ADAPTER: _adapter(1)}, patched={}, written_statuses={}, now="T"
    )
    assert sync.statuses == {
        "g-worker": {"replicas": 1, "selector": SELECTOR, "lastScaleTime": "T"}
    }
    again = plan_adapter_sync(
        model,
        uid="u1",
        live={ADAPTER: _adapter(1)},
        patched={},
        written_statuses=sync.statuses,
        now="T2",
    )
    assert again.statuses == {}
    current = _adapter(1, status={"replicas": 1, "selector": SELECTOR})
    assert (
        plan_adapter_sync(
            model, uid="u1", live={ADAPTER: current}, patched={}, written_statuses={}, now="T"
        ).statuses
        == {}
    )


def _deployment(replicas: int, image: str = "w:1") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "g-worker"},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"image": image}]}}},
    }


def _live(desired: dict[str, Any]) -> dict[str, Any]:
    stamped, _ = with_hash(desired)
    return stamped


@pytest.mark.parametrize(
    ("why", "desired", "live", "expected"),
    [
        ("create", _deployment(1), None, [("Created", "created Deployment/g-worker")]),
        (
            "update",
            _deployment(2),
            _live(_deployment(1)),
            [("Scaled", "scaled Deployment/g-worker 1 -> 2 replicas")],
        ),
        (
            "update",
            _deployment(2, image="w:2"),
            _live(_deployment(1)),
            [
                ("Updated", "updated Deployment/g-worker (spec changed)"),
                ("Scaled", "scaled Deployment/g-worker 1 -> 2 replicas"),
            ],
        ),
        (
            "drift",
            _deployment(1),
            _live(_deployment(1, image="x")),
            [("Updated", "updated Deployment/g-worker (edited outside the operator)")],
        ),
    ],
    ids=["created", "only-scaled", "scaled-and-updated", "drift"],
)
def test_change_notices(
    why: str, desired: dict[str, Any], live: dict[str, Any] | None, expected: list[tuple[str, str]]
) -> None:
    stamped, digest = with_hash(desired)
    assert change_notices([ApplyAction(stamped, digest, why, live)], []) == expected


def test_scale_change_and_only_replicas_changed() -> None:
    assert scale_change(_deployment(2), None) is None
    assert scale_change({"kind": "Service", "spec": {}}, {"spec": {}}) is None
    assert scale_change(_deployment(2), _deployment(1)) == "1 -> 2 replicas"
    assert only_replicas_changed(_deployment(2), _live(_deployment(1)))
    assert not only_replicas_changed(_deployment(2, image="w:2"), _live(_deployment(1)))
    assert change_notices([], ["Service/g-old"]) == [("Deleted", "deleted Service/g-old")]


def _workload(service: str, restart_id: str | None, ready: bool = True) -> dict[str, Any]:
    annotations = {"nvidia.com/restartAt": restart_id} if restart_id else {}
    return {
        "kind": "Deployment",
        "metadata": {
            "name": f"g-{service.lower()}",
            "generation": 1,
            "labels": {"nvidia.com/dynamo-component": service},
        },
        "spec": {"replicas": 1, "template": {"metadata": {"annotations": annotations}}},
        "status": {
            "observedGeneration": 1,
            "replicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": 1 if ready else 0,
            "conditions": [{"type": "Available", "status": "True"}],
        },
    }


@pytest.mark.parametrize(
    ("live", "previous", "annotations", "phase", "reasons"),
    [
        (
            [_workload("Frontend", None), _workload("worker", None)],
            None,
            {"Frontend": "r1"},
            "Restarting",
            ["RestartStarted", "RestartStarted"],
        ),
        (
            [_workload("Frontend", "r1"), _workload("worker", None)],
            {"observedID": "r1", "phase": "Restarting", "inProgress": ["Frontend"]},
            {"Frontend": "r1", "worker": "r1"},
            "Restarting",
            ["RestartStarted"],
        ),
        (
            [_workload("Frontend", "r1", ready=False), _workload("worker", None)],
            {"observedID": "r1", "phase": "Restarting", "inProgress": ["Frontend"]},
            {"Frontend": "r1"},
            "Restarting",
            [],
        ),
        (
            [_workload("Frontend", "r1"), _workload("worker", "r1")],
            {"observedID": "r1", "phase": "Restarting", "inProgress": ["worker"]},
            {"Frontend": "r1", "worker": "r1"},
            "Completed",
            ["RestartCompleted"],
        ),
    ],
    ids=[
        "starts-with-the-first-service",
        "next-service-once-the-first-is-ready",
        "waits-for-readiness",
        "completes",
    ],
)
def test_plan_graph_restart_is_sequential_by_default(
    live: list[dict[str, Any]],
    previous: dict[str, Any] | None,
    annotations: dict[str, str],
    phase: str,
    reasons: list[str],
) -> None:
    body = dgd()
    body["spec"]["restart"] = {"id": "r1"}
    plan = plan_graph_restart(parse_dgd(body), previous, live)
    assert plan.annotations == annotations
    assert plan.status is not None and plan.status["phase"] == phase
    assert [reason for reason, _ in restart_notices(plan, previous)] == reasons


def test_no_restart_request_keeps_live_stamps_and_tells_nothing() -> None:
    plan = plan_graph_restart(parse_dgd(dgd()), None, [_workload("worker", "old")])
    assert plan.annotations == {"worker": "old"} and plan.status is None
    assert restart_notices(plan, None) == []


def test_pods_by_group_reads_labels_and_skips_unlabelled_pods() -> None:
    def pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
        return {"metadata": {"name": name, "labels": labels}}

    component, group = "nvidia.com/dynamo-component", "instance-id"
    pods = [
        pod("a", {component: "worker", group: "0"}),
        pod("b", {component: "worker", group: "1"}),
        pod("c", {component: "worker", group: "x"}),
        pod("d", {component: "worker"}),
    ]
    grouped = pods_by_group(pods)
    assert {k: [p["metadata"]["name"] for p in v] for k, v in grouped.items()} == {
        ("worker", 0): ["a"],
        ("worker", 1): ["b"],
    }


def test_apply_waves_put_workloads_last() -> None:
    def action(kind: str) -> ApplyAction:
        return ApplyAction({"kind": kind}, "d", "create", None)

    waves = apply_waves(
        [action("Deployment"), action("Service"), action("StatefulSet"), action("ConfigMap")]
    )
    assert [[a.manifest["kind"] for a in wave] for wave in waves] == [
        ["Service", "ConfigMap"],
        ["Deployment", "StatefulSet"],
    ]
    assert apply_waves([action("Service")]) == [[action("Service")]]
    assert apply_waves([]) == []


def test_graph_memory_resets_when_the_uid_changes_and_forget_drops_it() -> None:
    state = ControllerState()
    memory = state.graph(("ns", "g"), "u1")
    memory.patched_replicas["worker"] = (2, 3)
    assert state.graph(("ns", "g"), "u1") is memory
    fresh = state.graph(("ns", "g"), "u2")
    assert fresh is not memory and fresh.patched_replicas == {}
    state.forget(("ns", "g"))
    assert ("ns", "g") not in state.graphs


def test_replica_patch_rewrites_the_component_list_under_a_resource_version_precondition() -> None:
    body = {
        "metadata": {"resourceVersion": "7"},
        "spec": {"components": [{"name": "Frontend"}, {"name": "worker", "replicas": 1}]},
    }
    assert replica_patch(body, {"worker": {"replicas": 3}}) == {
        "metadata": {"resourceVersion": "7"},
        "spec": {"components": [{"name": "Frontend"}, {"name": "worker", "replicas": 3}]},
    }
    assert body["spec"]["components"][1]["replicas"] == 1  # the watched body is not touched
