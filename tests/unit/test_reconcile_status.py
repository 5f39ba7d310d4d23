"""The typed status: `set_condition` (lws semantics), `calculate_status`, the change test."""

from __future__ import annotations

from typing import Any

import pytest

from dgd_operator.api.models import Condition, DynamoGraphDeploymentStatus
from dgd_operator.reconcile.readiness import GraphReadiness
from dgd_operator.reconcile.status import (
    ObservedGraph,
    calculate_status,
    dump_status,
    parse_status,
    rejected_status,
    set_condition,
    status_differs,
)

pytestmark = pytest.mark.unit


def _ready(
    status: str, reason: str = "r", message: str = "m", at: str = "T0", generation: int | None = 1
) -> Condition:
    return Condition.model_validate(
        {
            "type": "Ready",
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": at,
            "observedGeneration": generation,
        }
    )


@pytest.mark.parametrize(
    ("existing", "new", "changed", "expected"),
    [
        ([], _ready("True", at="T1"), True, [_ready("True", at="T1")]),
        ([_ready("True")], _ready("True", at="T1"), False, [_ready("True")]),
        ([_ready("True")], _ready("False", at="T1"), True, [_ready("False", at="T1")]),
        (
            [_ready("False")],
            _ready("False", message="still 1/2", at="T1"),
            True,
            [_ready("False", message="still 1/2")],
        ),
        (
            [_ready("True", generation=1)],
            _ready("True", at="T1", generation=2),
            True,
            [_ready("True", generation=2)],
        ),
        (
            [Condition(type="Other", status="True")],
            _ready("True", at="T1"),
            True,
            [Condition(type="Other", status="True"), _ready("True", at="T1")],
        ),
    ],
    ids=[
        "appended",
        "unchanged",
        "flip-takes-new-time",
        "message-keeps-time",
        "generation-keeps-time",
        "other-type-kept",
    ],
)
def test_set_condition(
    existing: list[Condition], new: Condition, changed: bool, expected: list[Condition]
) -> None:
    status = DynamoGraphDeploymentStatus(conditions=list(existing))
    assert set_condition(status, new) is changed
    assert status.conditions == expected


def _observed(**overrides: Any) -> ObservedGraph:
    services = {
        "worker": {
            "componentKind": "Deployment",
            "componentNames": ["g-worker"],
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
        }
    }
    values: dict[str, Any] = {
        "generation": 3,
        "readiness": GraphReadiness(
            "successful", "all_resources_are_ready", "All resources are ready", services
        ),
        "groups": {},
        "group_failures": [],
        "restart": None,
    }
    values.update(overrides)
    return ObservedGraph(**values)


def test_calculate_status_is_typed_and_keeps_the_transition_time() -> None:
    previous = parse_status(
        {
            "state": "pending",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "x",
                    "message": "y",
                    "lastTransitionTime": "T0",
                }
            ],
        }
    )
    status = calculate_status(previous, _observed(), now="T5")
    assert dump_status(status) == {
        "state": "successful",
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "all_resources_are_ready",
                "message": "All resources are ready",
                "lastTransitionTime": "T0",
                "observedGeneration": 3,
            }
        ],
        "services": {
            "worker": {
                "componentKind": "Deployment",
                "componentNames": ["g-worker"],
                "replicas": 1,
                "updatedReplicas": 1,
                "readyReplicas": 1,
                "availableReplicas": 1,
                "groups": [],
            }
        },
    }


def test_a_failed_group_fails_the_graph_and_groups_land_under_their_service() -> None:
    group = {
        "index": 0,
        "name": "g-worker-0",
        "phase": "Failed",
        "restarts": 5,
        "message": "budget spent",
    }
    status = calculate_status(
        DynamoGraphDeploymentStatus(),
        _observed(
            groups={"worker": [group]},
            group_failures=["budget spent"],
            restart={"observedID": "r1", "phase": "Completed", "inProgress": []},
        ),
        now="T5",
    )
    dumped = dump_status(status)
    assert (dumped["state"], dumped["conditions"][0]["status"]) == ("failed", "False")
    assert dumped["conditions"][0]["reason"] == "GroupRestartBudgetExhausted"
    assert dumped["services"]["worker"]["groups"] == [{**group, "restartTimes": []}]
    assert dumped["restart"] == {"observedID": "r1", "phase": "Completed", "inProgress": []}


def test_rejected_status_keeps_what_was_reported_before() -> None:
    previous = calculate_status(DynamoGraphDeploymentStatus(), _observed(), now="T0")
    status = rejected_status(
        previous, reason="invalid_spec", message="spec.x: bad", generation=4, now="T1"
    )
    dumped = dump_status(status)
    assert (
        dumped["state"] == "failed"
        and dumped["observedGeneration"] == 3
        and "worker" in dumped["services"]
    )
    assert dumped["conditions"] == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "invalid_spec",
            "message": "spec.x: bad",
            "lastTransitionTime": "T1",
            "observedGeneration": 4,
        }
    ]


def test_an_unreadable_live_status_counts_as_empty() -> None:
    assert parse_status({"state": "exploded"}) == DynamoGraphDeploymentStatus()


def test_status_compare_ignores_transition_times() -> None:
    old = [
        {
            "type": "Ready",
            "status": "True",
            "reason": "r",
            "message": "m",
            "lastTransitionTime": "T0",
        }
    ]
    current = {"state": "successful", "conditions": old}
    assert not status_differs(
        current, {"state": "successful", "conditions": [dict(old[0], lastTransitionTime="T9")]}
    )
    assert status_differs(current, {"state": "pending", "conditions": old})


def _group(phase: str) -> dict[str, Any]:
    return {"index": 0, "name": "g-worker-0", "phase": phase, "restarts": 0}


@pytest.mark.parametrize(
    ("phase", "state", "ready", "message"),
    [
        ("Running", "successful", "True", "All resources are ready"),
        ("Starting", "pending", "False", "Multinode groups not running: g-worker-0: Starting"),
        ("Restarting", "pending", "False", "Multinode groups not running: g-worker-0: Restarting"),
    ],
)
def test_ready_statefulsets_are_successful_only_once_their_groups_run(
    phase: str, state: str, ready: str, message: str
) -> None:
    # The StatefulSet counters (readiness) may say ready before the operator's pod watch has
    # seen the last rank Ready: the graph waits for the group, so `successful` implies Running.
    status = dump_status(
        calculate_status(
            DynamoGraphDeploymentStatus(), _observed(groups={"worker": [_group(phase)]}), now="T5"
        )
    )
    condition = status["conditions"][0]
    assert (status["state"], condition["status"], condition["message"]) == (state, ready, message)
    assert status["services"]["worker"]["groups"][0]["phase"] == phase
