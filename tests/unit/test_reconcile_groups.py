"""Whole-group restarts of multinode groups (`reconcile/groups.py`), table-style."""

from __future__ import annotations

from typing import Any

import pytest

from dgd_operator.reconcile.groups import (
    GROUP_FAILED,
    GROUP_RESTARTING,
    GROUP_RUNNING,
    GROUP_STARTING,
    GroupMemory,
    GroupPolicy,
    GroupSpec,
    PodState,
    group_specs,
    plan_group,
    pod_summary,
)

pytestmark = pytest.mark.unit

SPEC = GroupSpec(
    "decode",
    0,
    "g-decode-0",
    ("g-decode-0-ldr", "g-decode-0-wkr"),
    ("g-decode-0-ldr-0", "g-decode-0-wkr-1"),
)
STS = (("ldr-uid", 1), ("wkr-uid", 1))
POLICY = GroupPolicy(budget=2, window=600, backoff=10, backoff_cap=60)


def _pod(
    name: str,
    uid: str,
    *,
    ready: bool = True,
    restarts: int = 0,
    phase: str = "Running",
    deleting: bool = False,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "restartCount": restarts, "state": {"running": {}}}
    if restarts:
        container["lastState"] = {"terminated": {"reason": "Error", "exitCode": 1}}
    return {
        "metadata": {
            "name": name,
            "uid": uid,
            "deletionTimestamp": "2026-01-01T00:00:00Z" if deleting else None,
        },
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [container],
        },
    }


def _group(leader: str = "l1", worker: str = "w1", **worker_state: Any) -> list[dict[str, Any]]:
    return [_pod("g-decode-0-ldr-0", leader), _pod("g-decode-0-wkr-1", worker, **worker_state)]


def _running() -> GroupMemory:
    memory = GroupMemory()
    plan_group(memory, SPEC, _group(), STS, POLICY, now=1000)
    assert memory.phase == GROUP_RUNNING and memory.armed
    return memory


def test_group_specs_from_statefulsets() -> None:
    def sts(name: str, role: str, replicas: int, start: int | None) -> dict[str, Any]:
        spec: dict[str, Any] = {"replicas": replicas}
        if start is not None:
            spec["ordinals"] = {"start": start}
        labels = {"nvidia.com/dynamo-component": "decode", "role": role, "instance-id": "1"}
        return {"kind": "StatefulSet", "metadata": {"name": name, "labels": labels}, "spec": spec}

    desired = [
        sts("g-decode-1-wkr", "worker", 3, 1),
        sts("g-decode-1-ldr", "leader", 1, None),
        {"kind": "Deployment"},
    ]
    [spec] = group_specs(desired)
    assert spec == GroupSpec(
        "decode",
        1,
        "g-decode-1",
        ("g-decode-1-ldr", "g-decode-1-wkr"),
        ("g-decode-1-ldr-0", "g-decode-1-wkr-1", "g-decode-1-wkr-2", "g-decode-1-wkr-3"),
    )


def test_starting_group_is_not_restarted_and_runs_once_all_pods_are_ready() -> None:
    memory = GroupMemory()
    assert plan_group(memory, SPEC, _group(ready=False), STS, POLICY, now=1000).delete == []
    assert memory.phase == GROUP_STARTING
    # Before the group started, a crashing or replaced pod is the kubelet's business.
    assert (
        plan_group(
            memory, SPEC, _group(worker="w2", ready=False, restarts=3), STS, POLICY, now=1001
        ).delete
        == []
    )
    plan_group(memory, SPEC, _group(worker="w2", restarts=3), STS, POLICY, now=1002)
    assert memory.phase == GROUP_RUNNING


@pytest.mark.parametrize(
    ("pods", "reason"),
    [
        (_group(worker="w2"), "pod g-decode-0-wkr-1 deleted and re-created"),
        (_group(deleting=True), "pod g-decode-0-wkr-1 deleted"),
        (_group()[:1], "pod g-decode-0-wkr-1 deleted"),
        (_group(restarts=1), "pod g-decode-0-wkr-1 container main restarted (Error, exit code 1)"),
        (_group(phase="Failed"), "pod g-decode-0-wkr-1 failed"),
    ],
)
def test_failure_of_a_started_group_deletes_every_pod(
    pods: list[dict[str, Any]], reason: str
) -> None:
    memory = _running()
    decision = plan_group(memory, SPEC, pods, STS, POLICY, now=1010)
    assert decision.reason == reason
    assert sorted(p.uid for p in decision.delete) == sorted(
        p["metadata"]["uid"] for p in pods if not p["metadata"]["deletionTimestamp"]
    )
    assert (memory.phase, memory.restarts, memory.last_reason) == (GROUP_RESTARTING, 1, reason)
    # The pods we deleted are ignored while they go; their successors run the group again.
    assert plan_group(memory, SPEC, pods, STS, POLICY, now=1011).delete == []
    plan_group(memory, SPEC, _group(leader="l9", worker="w9"), STS, POLICY, now=1012)
    assert memory.phase == GROUP_RUNNING and memory.restarts == 1


def test_backoff_then_budget_exhausted() -> None:
    memory = _running()
    assert plan_group(memory, SPEC, _group(restarts=1), STS, POLICY, now=1000).delete
    # The new incarnation crashes before it is ready: still a failure, but backoff applies.
    crashing = _group(leader="l2", worker="w2")
    plan_group(memory, SPEC, crashing, STS, POLICY, now=1001)
    waiting = plan_group(
        memory, SPEC, _group(leader="l2", worker="w2", restarts=1), STS, POLICY, now=1002
    )
    assert waiting.delete == [] and waiting.requeue_after == pytest.approx(8)
    assert plan_group(
        memory, SPEC, _group(leader="l2", worker="w2", restarts=1), STS, POLICY, now=1010
    ).delete
    plan_group(memory, SPEC, _group(leader="l3", worker="w3"), STS, POLICY, now=1011)
    exhausted = plan_group(
        memory, SPEC, _group(leader="l3", worker="w3", phase="Failed"), STS, POLICY, now=1100
    )
    assert exhausted.exhausted and exhausted.delete == []
    assert memory.phase == GROUP_FAILED
    assert memory.failed_reason == (
        "GroupRestartBudgetExhausted: g-decode-0: 2 restarts in 10m; last: pod g-decode-0-wkr-1 failed"
    )
    assert (
        plan_group(memory, SPEC, _group(leader="l4", worker="w4"), STS, POLICY, now=1200).delete
        == []
    )
    # A new revision of the StatefulSets (spec edit) starts afresh with a new budget.
    plan_group(
        memory,
        SPEC,
        _group(leader="l4", worker="w4"),
        (("ldr-uid", 2), ("wkr-uid", 2)),
        POLICY,
        now=1300,
    )
    assert (memory.phase, memory.restarts) == (GROUP_RUNNING, 0)


def test_restarts_outside_the_window_do_not_count() -> None:
    memory = _running()
    memory.restart_times = [0.0, 1.0]
    assert plan_group(memory, SPEC, _group(restarts=1), STS, POLICY, now=1000).delete
    assert len(memory.restart_times) == 1


def test_status_round_trip_continues_the_budget_after_an_operator_restart() -> None:
    memory = _running()
    plan_group(memory, SPEC, _group(restarts=1), STS, POLICY, now=1000)
    plan_group(memory, SPEC, _group(leader="l2", worker="w2"), STS, POLICY, now=1001)
    status = memory.status(SPEC)
    assert (
        status["phase"] == GROUP_RUNNING
        and status["restarts"] == 1
        and len(status["restartTimes"]) == 1
    )
    revived = GroupMemory.from_status(status)
    plan_group(revived, SPEC, _group(leader="l2", worker="w2"), STS, POLICY, now=1002)
    assert revived.status(SPEC) == status  # no status write after an operator restart
    assert plan_group(
        revived, SPEC, _group(leader="l2", worker="w2", restarts=1), STS, POLICY, now=1020
    ).delete
    decision = plan_group(
        revived, SPEC, _group(leader="l3", worker="w3", phase="Failed"), STS, POLICY, now=1100
    )
    assert decision.exhausted  # 1 restart before + 1 after the operator restart = budget 2


def test_pod_summary_keeps_only_what_restarts_need() -> None:
    pod = _pod("p", "u", restarts=2)
    pod["spec"] = {
        "containers": [{"name": "main", "image": "x"}],
        "schedulingGroup": {"podGroupName": "g"},
        "nodeName": "n1",
    }
    pod["metadata"]["labels"] = {"role": "worker"}
    summary = pod_summary(pod)
    # Only the gang it joined and the node it is bound to (scheduledReplicas).
    assert summary["spec"] == {"schedulingGroup": {"podGroupName": "g"}, "nodeName": "n1"}
    state = PodState.of(summary)
    assert (state.name, state.uid, state.restarts, state.ready, state.last_error) == (
        "p",
        "u",
        2,
        True,
        "Error, exit code 1",
    )
