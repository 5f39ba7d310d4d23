"""Which status changes may wait (progress) and which are written at once (transitions)."""

from __future__ import annotations

from typing import Any

import pytest

from dgd_operator.reconcile.status import is_progress_only

pytestmark = pytest.mark.unit


def status(state: str = "pending", ready: str = "False", reason: str = "some_resources_are_not_ready",
           message: str = "Resources not ready: a", ready_replicas: int = 0,
           generation: int = 1) -> dict[str, Any]:  # fmt: skip
    """A DGD status as the controller writes it."""
    return {
        "state": state,
        "conditions": [{"type": "Ready", "status": ready, "reason": reason, "message": message}],
        "observedGeneration": generation,
        "services": {"worker": {"readyReplicas": ready_replicas}},
    }


@pytest.mark.parametrize(
    ("current", "desired", "progress"),
    [
        (status(), status(ready_replicas=1, message="Resources not ready: b"), True),
        (status(), status(ready_replicas=2), True),
        ({}, status(), False),  # the first status is a transition
        (status(), status("successful", "True", "all_resources_are_ready"), False),
        (status("successful", "True", "all_resources_are_ready"), status(), False),
        (status(), status(generation=2), False),  # a new spec was observed
        (status(), status("failed", "False", "invalid_spec"), False),
        (status(), {**status(), "restart": {"observedID": "r1", "phase": "Restarting"}}, False),
    ],
    ids=[
        "counts-and-message",
        "counts",
        "first",
        "to-ready",
        "from-ready",
        "generation",
        "to-failed",
        "restart",
    ],
)
def test_only_progress_within_one_state_may_be_coalesced(
    current: dict[str, Any], desired: dict[str, Any], progress: bool
) -> None:
    assert is_progress_only(current, desired) is progress
