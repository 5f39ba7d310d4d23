"""The managed worker rollout planner (dgd_operator.reconcile.rollout), table-tested."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures.catalog import dgd_documents, graph_paths
from tests.fixtures.dgd import DGD

from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.api.validation import validate_dgd
from dgd_operator.reconcile.restart import RestartPlan, plan_restart
from dgd_operator.reconcile.rollout import (
    Counts,
    current_worker_hash,
    merge_service_status,
    plan_phase,
    plan_rolling,
    plan_rollout,
    pod_causes,
    scaled_step,
    spread_old,
    supersede_restart,
    worker_hash_input,
)

pytestmark = pytest.mark.unit

NOW = "2026-12-06T09:00:00Z"


def _deployment(
    name: str,
    *,
    svc: str = "decode",
    spec: int = 1,
    available: int = 0,
    ready: int | None = None,
    generation: str | None = None,
    created: str = "2026-12-06T08:00:00Z",
    strategy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    labels = {"nvidia.com/dynamo-component": svc}
    if generation:
        labels["nvidia.com/dynamo-worker-hash"] = generation
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "creationTimestamp": created, "generation": 1},
        "spec": {
            "replicas": spec,
            "strategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {}},
            "template": {"metadata": {"labels": labels}},
        },
        "status": {
            "observedGeneration": 1,
            "replicas": spec,
            "availableReplicas": available,
            "readyReplicas": available if ready is None else ready,
        },
    }


def _graph(**decode: Any) -> DynamoGraphDeployment:
    doc = (
        DGD("g")
        .service("Frontend", componentType="frontend")
        .service("decode", componentType="worker", subComponentType="decode", **decode)
        .service("prefill", componentType="worker", subComponentType="prefill")
        .build()
    )
    result = validate_dgd(doc)
    assert result.dgd is not None, result.errors
    return result.dgd


# ------------------------------------------------------------------ the worker hash


def test_the_hash_changes_with_worker_pod_inputs_only() -> None:
    base = current_worker_hash(_graph())
    assert base is not None
    digest, names = base
    assert names == {"decode": f"g-decode-{digest}", "prefill": f"g-prefill-{digest}"}
    assert current_worker_hash(_graph(replicas=3)) == base  # replica-only: no rollout
    assert current_worker_hash(_graph(envs=[{"name": "X", "value": "1"}])) != base
    multinode = _graph(multinode={"nodeCount": 2})
    assert current_worker_hash(multinode) is None  # multinode graphs update in place


@pytest.mark.parametrize("path", graph_paths(), ids=lambda p: p.stem)
def test_the_hash_is_still_that_of_the_json_dumps_encoding(path: Path) -> None:
    """Worker hashes name live Deployments: a faster encoder must give the same bytes."""
    for doc in dgd_documents(path):
        doc["metadata"].setdefault("namespace", "ns")
        dgd = validate_dgd(doc).dgd
        assert dgd is not None
        found = current_worker_hash(dgd)
        if found is None:
            continue
        services = sorted(found[1])
        encoded = json.dumps(
            worker_hash_input(dgd, services), sort_keys=True, separators=(",", ":"), default=str
        )
        assert found[0] == hashlib.sha256(encoded.encode()).hexdigest()[:8]


# ------------------------------------------------------------------ replica arithmetic


@pytest.mark.parametrize(
    ("raw", "desired", "up", "expected"),
    [
        ("25%", 4, True, 1),
        ("25%", 1, True, 1),  # surge rounds up
        ("25%", 1, False, 0),  # unavailable rounds down
        ("50%", 3, False, 1),
        (2, 4, True, 2),
        (None, 8, True, 2),  # default 25%
    ],
)
def test_scaled_step(raw: object, desired: int, up: bool, expected: int) -> None:
    assert scaled_step(raw, desired, round_up=up) == expected


@pytest.mark.parametrize(
    ("desired", "surge", "unavailable", "old", "new", "expected"),
    [
        # D=1, 25%/25% => S=1, U=0: the new pod first, the old one only once it is available.
        (1, 1, 0, Counts(1, 1), Counts(0, 0), (1, 1)),
        (1, 1, 0, Counts(1, 1), Counts(1, 0), (1, 1)),
        (1, 1, 0, Counts(1, 1), Counts(1, 1), (0, 1)),
        # Both zero means surge 1.
        (2, 0, 0, Counts(2, 2), Counts(0, 0), (2, 1)),
        # U=1, no surge: one old pod goes first; the new one follows on the next reconcile.
        (2, 0, 1, Counts(2, 2), Counts(0, 0), (1, 0)),
        (2, 0, 1, Counts(1, 1), Counts(0, 0), (1, 1)),
        # Surplus old pods (spec lowered) go at once, down to what keeps minAvailable.
        (2, 1, 0, Counts(3, 3), Counts(0, 0), (2, 0)),
        # Unavailable new pods never count towards minAvailable.
        (2, 1, 0, Counts(2, 1), Counts(1, 0), (2, 1)),
        # Finished: old at zero, new at desired.
        (2, 1, 0, Counts(0, 0), Counts(2, 2), (0, 2)),
    ],
)
def test_plan_rolling(
    desired: int, surge: int, unavailable: int, old: Counts, new: Counts, expected: tuple[int, int]
) -> None:
    assert plan_rolling(desired, surge, unavailable, old, new) == expected


def test_old_replicas_leave_the_oldest_generation_first_and_come_back_to_the_newest() -> None:
    oldest = _deployment("g-decode-a", spec=2, available=2, created="2026-12-06T07:00:00Z")
    newer = _deployment("g-decode-b", spec=2, available=2)
    assert spread_old([oldest, newer], 3) == {"g-decode-a": 1, "g-decode-b": 2}
    assert spread_old([oldest, newer], 0) == {"g-decode-a": 0, "g-decode-b": 0}
    unavailable = _deployment("g-decode-b", spec=2, available=0)
    assert spread_old([oldest, unavailable], 3) == {"g-decode-a": 2, "g-decode-b": 1}


# ------------------------------------------------------------------ phases


@pytest.mark.parametrize(
    ("previous", "rolling", "updated", "phase", "complete", "events"),
    [
        (None, False, [], None, False, []),
        ({"phase": "Completed"}, False, [], "Completed", False, []),
        (None, True, [], "Pending", False, ["RollingUpdateStarted"]),
        ({"phase": "Completed"}, True, [], "Pending", False, ["RollingUpdateStarted"]),
        ({"phase": "Pending"}, True, ["a", "b"], "InProgress", False, []),  # never skipped
        ({"phase": "InProgress"}, True, ["a"], "InProgress", False, []),
        ({"phase": "InProgress"}, True, ["a", "b"], "Completed", True, ["RollingUpdateCompleted"]),
        ({"phase": "InProgress"}, False, [], "Completed", False, ["RollingUpdateCompleted"]),
    ],
)
def test_phases(
    previous: dict[str, Any] | None,
    rolling: bool,
    updated: list[str],
    phase: str | None,
    complete: bool,
    events: list[str],
) -> None:
    status, done, notices = plan_phase(
        previous, services=["a", "b"], rolling=rolling, updated=updated, now=NOW
    )
    assert (status or {}).get("phase") == phase
    assert done is complete
    assert [reason for reason, _ in notices] == events
    if phase == "Completed" and events:
        assert status is not None and status["endTime"] == NOW
        assert status["updatedServices"] == ["a", "b"]


# ------------------------------------------------------------------ whole plans


def _plan(live: list[dict[str, Any]], previous: dict[str, Any] | None, **kw: Any) -> Any:
    desired = {"decode": _deployment("g-decode-new", generation="new", **kw)}
    return plan_rollout("new", ["decode"], desired, live, previous, now=NOW)


def test_no_old_generation_means_no_rollout_and_full_counts() -> None:
    plan = _plan([_deployment("g-decode-new", generation="new", available=1)], None, spec=1)
    assert not plan.active and plan.status is None and not plan.old
    assert plan.components["decode"].new_replicas == 1


def test_a_new_generation_starts_pending_then_surges_while_the_old_one_serves() -> None:
    old = _deployment("g-decode-old", generation="old", available=1)
    plan = _plan([old], None)
    assert plan.status is not None and plan.status["phase"] == "Pending"
    assert plan.components["decode"].new_replicas == 1
    assert plan.components["decode"].old_replicas == {"g-decode-old": 1}
    assert plan.blocked == ["g-decode-new: not created yet"]
    # The new pod exists but is not available yet: the old one keeps serving.
    starting = _deployment("g-decode-new", generation="new", available=0)
    plan = _plan([old, starting], {"phase": "Pending", "startTime": NOW})
    assert plan.status is not None and plan.status["phase"] == "InProgress"
    assert plan.components["decode"].old_replicas == {"g-decode-old": 1}
    # Available: the old one goes to zero, still counted until it has no ready pod.
    ready = _deployment("g-decode-new", generation="new", available=1)
    plan = _plan([old, ready], {"phase": "InProgress", "startTime": NOW})
    assert plan.components["decode"].old_replicas == {"g-decode-old": 0}
    assert not plan.complete
    drained = _deployment("g-decode-old", generation="old", spec=0)
    plan = _plan([drained, ready], {"phase": "InProgress", "startTime": NOW})
    assert plan.complete and plan.status is not None
    assert plan.status["phase"] == "Completed" and plan.status["startTime"] == NOW


def test_legacy_deployments_without_a_hash_are_an_old_generation() -> None:
    legacy = _deployment("g-decode", available=1)
    plan = _plan([legacy], None)
    assert plan.old == {"decode": [legacy]}


def test_recreate_drains_the_old_generation_before_starting_the_new_one() -> None:
    recreate = {"type": "Recreate"}
    old = _deployment("g-decode-old", generation="old", available=1)
    plan = _plan([old], {"phase": "InProgress"}, strategy=recreate)
    assert plan.components["decode"].old_replicas == {"g-decode-old": 0}
    assert plan.components["decode"].new_replicas == 0
    drained = _deployment("g-decode-old", generation="old", spec=0)
    plan = _plan([drained], {"phase": "InProgress"}, strategy=recreate)
    assert plan.components["decode"].new_replicas == 1


# ------------------------------------------------------------------ status, restart, causes


def test_service_status_merges_generations_and_keeps_the_serving_namespace() -> None:
    new_entry = {
        "componentKind": "Deployment",
        "componentNames": ["g-decode-new"],
        "runtimeNamespace": "ns-g-new",
        "replicas": 1,
        "updatedReplicas": 1,
        "readyReplicas": 0,
        "availableReplicas": 0,
    }
    old = _deployment("g-decode-old", generation="old", available=1)
    merged = merge_service_status(new_entry, [old], {"g-decode-old": 1}, "ns-g")
    assert merged["componentNames"] == ["g-decode-new", "g-decode-old"]
    assert (merged["replicas"], merged["readyReplicas"], merged["updatedReplicas"]) == (2, 1, 1)
    assert merged["runtimeNamespace"] == "ns-g-old"
    cut_over = merge_service_status(new_entry, [old], {"g-decode-old": 0}, "ns-g")
    assert cut_over["runtimeNamespace"] == "ns-g-new"


def test_a_restart_during_a_rollout_is_superseded_and_stays_so() -> None:
    from dgd_operator.reconcile.restart import RestartRequest

    started = plan_restart(RestartRequest("r2"), ["decode"], {"decode": "r1"}, {}, None)
    assert started.annotations == {"decode": "r2"}
    superseded = supersede_restart(started, {"decode": "r1"})
    assert superseded.annotations == {"decode": "r1"}  # nothing new is stamped
    assert superseded.status == {"observedID": "r2", "phase": "Superseded", "inProgress": []}
    # After the rollout, the same id is not run again.
    later = plan_restart(RestartRequest("r2"), ["decode"], {"decode": "r1"}, {}, superseded.status)
    assert later.annotations == {"decode": "r1"}
    done = RestartPlan({}, {"observedID": "r1", "phase": "Completed"})
    assert supersede_restart(done, {}) is done


def test_pod_causes_name_the_waiting_reason_and_the_last_exit() -> None:
    crashing = {
        "metadata": {"name": "p1"},
        "status": {
            "containerStatuses": [
                {
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}},
                }
            ]
        },
    }
    unschedulable = {
        "metadata": {"name": "p2"},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/4 nodes are available",
                }
            ]
        },
    }
    creating = {
        "metadata": {"name": "p0"},
        "status": {"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]},
    }
    assert pod_causes([unschedulable, crashing, creating]) == [
        "pod p1: CrashLoopBackOff (last exit 2: Error)",
        "pod p2: Unschedulable: 0/4 nodes are available",
    ]


# ------------------------------------------------------------------ the reconcile steps


async def test_a_worker_change_rolls_through_generations_and_then_costs_no_writes() -> None:
    from tests.unit.reconcile_fakes import KEY, controller_for, deliver, dgd, owned

    controller, view, client = controller_for(dgd())
    await controller.reconcile(KEY)
    deliver(view, client, controller)
    owned(view)
    [first] = [k[2] for k in view.objects if k[1] == "Deployment" and k[2].startswith("g-worker-")]
    client.calls.clear()
    await controller.reconcile(KEY)
    assert client.writes() == []

    assert view.dgd_body is not None
    view.dgd_body["spec"]["services"]["worker"]["extraPodSpec"]["mainContainer"]["image"] = "w:2"
    view.dgd_body["metadata"]["generation"] = 2
    client.calls.clear()
    await controller.reconcile(KEY)
    [second] = [name for name in client.written() if name.startswith("g-worker-") and name != first]
    assert ("delete", first) not in client.calls  # the old generation keeps serving
    status = controller.state.graphs[KEY].written_status
    assert status is not None and status["rollingUpdate"]["phase"] == "Pending"
    assert status["state"] == "pending"
    assert status["conditions"][0]["reason"] == "rolling_update_in_progress"
    assert status["components"]["worker"]["componentNames"] == sorted([first, second])
    assert status["components"]["worker"]["runtimeNamespace"] == f"ns-g-{first.rsplit('-', 1)[1]}"

    deliver(view, client, controller)
    owned(view)
    client.calls.clear()
    await controller.reconcile(KEY)  # the new generation is ready: the old one goes to zero
    assert ("patch", first) in client.calls
    old = view.objects[("apps/v1", "Deployment", first)]
    old["spec"]["replicas"] = 0
    old["status"].update(replicas=0, readyReplicas=0, availableReplicas=0)
    deliver(view, client, controller)
    assert view.dgd_body["status"]["rollingUpdate"]["phase"] == "InProgress"

    client.calls.clear()
    await controller.reconcile(KEY)
    assert ("delete", first) in client.calls
    assert client.event_reasons()[-1] == "RollingUpdateCompleted"
    deliver(view, client, controller)
    status = view.dgd_body["status"]
    assert status["rollingUpdate"]["phase"] == "Completed"
    assert status["rollingUpdate"]["updatedComponents"] == ["worker"]
    assert status["state"] == "successful"
    assert status["components"]["worker"]["componentNames"] == [second]

    client.calls.clear()
    await controller.reconcile(KEY)
    assert client.writes() == []
