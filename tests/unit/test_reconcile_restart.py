"""Restart planning for `spec.restart` (Dynamo §4.6)."""

from __future__ import annotations

import pytest

from dgd_operator.reconcile.restart import RestartRequest, plan_restart

pytestmark = pytest.mark.unit

SERVICES = ["Frontend", "decode", "prefill"]


def test_no_request_keeps_existing_annotations() -> None:
    plan = plan_restart(None, SERVICES, {"decode": "r0"}, {}, None)
    assert plan.annotations == {"decode": "r0"}
    assert plan.status is None


def test_sequential_walks_the_order_one_service_at_a_time() -> None:
    request = RestartRequest("r1", order=("prefill", "decode", "Frontend"))
    first = plan_restart(request, SERVICES, {}, {}, None)
    assert first.annotations == {"prefill": "r1"}
    assert first.status == {"observedID": "r1", "phase": "Restarting", "inProgress": ["prefill"]}
    assert first.started and first.stamped == ["prefill"]

    rolling = plan_restart(request, SERVICES, {"prefill": "r1"}, {"prefill": False}, first.status)
    assert rolling.annotations == {"prefill": "r1"} and rolling.stamped == []

    second = plan_restart(request, SERVICES, {"prefill": "r1"}, {"prefill": True}, first.status)
    assert second.annotations == {"prefill": "r1", "decode": "r1"}
    assert second.status is not None and second.status["inProgress"] == ["decode"]
    assert not second.started

    live = dict.fromkeys(SERVICES, "r1")
    done = plan_restart(request, SERVICES, live, dict.fromkeys(SERVICES, True), second.status)
    assert done.status == {"observedID": "r1", "phase": "Completed", "inProgress": []}
    assert done.completed


def test_default_order_is_alphabetical() -> None:
    plan = plan_restart(RestartRequest("r1"), SERVICES, {}, {}, None)
    assert plan.annotations == {"Frontend": "r1"}


def test_parallel_stamps_everything_at_once() -> None:
    plan = plan_restart(RestartRequest("r2", parallel=True), SERVICES, dict.fromkeys(SERVICES, "r1"), {}, None)
    assert plan.annotations == dict.fromkeys(SERVICES, "r2")
    assert plan.status is not None and plan.status["inProgress"] == sorted(SERVICES)
    assert plan.stamped == sorted(SERVICES)


def test_completed_restart_is_not_repeated() -> None:
    status = {"observedID": "r1", "phase": "Completed", "inProgress": []}
    plan = plan_restart(RestartRequest("r1"), SERVICES, {"decode": "r1"}, {}, status)
    assert plan.annotations == {"decode": "r1"}
    assert plan.status == status and not plan.started and not plan.completed
