"""The DGD's status: calculated (pure, typed) and written only when it changed.

`calculate_status` returns the typed `DynamoGraphDeploymentStatus`, so a misspelt field is a
type error instead of a field the API server silently prunes. Conditions go through
`set_condition` (lws `setCondition` semantics). The one writer, `write_status_if_changed`,
server-side applies the status subresource only when it differs from the live one (transition
times ignored) and from our own last write (which the watch cache may not have yet), and
coalesces progress-only changes (replica counts moving pod by pod) to one write per interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from dgd_operator.api.constants import (
    DGD_KIND,
    GROUP_VERSION_V1BETA1,
    REASON_GROUP_FAILED,
    REASON_NOT_READY,
    REASON_ROLLING_UPDATE,
    ROLLING_IN_PROGRESS,
    ROLLING_PENDING,
    STATE_FAILED,
    STATE_PENDING,
)
from dgd_operator.api.conversion import status_to_v1beta1
from dgd_operator.api.models import (
    Condition,
    DynamoGraphDeploymentStatus,
    GroupStatus,
    RestartStatus,
    RollingUpdateStatus,
    ServiceReplicaStatus,
)
from dgd_operator.controllerkit.kubeapi import KubeAPI
from dgd_operator.reconcile.groups import GROUP_RUNNING
from dgd_operator.reconcile.readiness import GraphReadiness
from dgd_operator.reconcile.state import DgdMemory, Key

READY = "Ready"
STATUS_PROGRESS_INTERVAL_SECONDS = 1.0
"""At most one progress-only status write per DGD per interval (state changes are not delayed)."""


def set_condition(status: DynamoGraphDeploymentStatus, condition: Condition) -> bool:
    """Put `condition` into `status.conditions`; True when anything changed.

    As lws's `setCondition`: a condition of a new type is appended; a status flip replaces the
    old condition, with `condition.last_transition_time`. Unlike lws, a condition whose status
    stays keeps its transition time but takes the new reason, message and observedGeneration
    (our not-ready message names what is still missing).
    """
    for index, current in enumerate(status.conditions):
        if current.type != condition.type:
            continue
        if current.status != condition.status:
            status.conditions[index] = condition
            return True
        updated = condition.model_copy(
            update={"last_transition_time": current.last_transition_time}
        )
        if updated == current:
            return False
        status.conditions[index] = updated
        return True
    status.conditions.append(condition)
    return True


def parse_status(raw: Mapping[str, Any] | None) -> DynamoGraphDeploymentStatus:
    """The typed form of a live status (an unreadable one counts as empty: it is rewritten)."""
    try:
        return DynamoGraphDeploymentStatus.model_validate(dict(raw or {}))
    except ValidationError:
        return DynamoGraphDeploymentStatus()


def dump_status(status: DynamoGraphDeploymentStatus) -> dict[str, Any]:
    """The wire form of a status (camelCase, unset fields left out)."""
    return status.model_dump(by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class ObservedGraph:
    """Everything `calculate_status` reads about one reconcile."""

    generation: int | None
    readiness: GraphReadiness
    groups: Mapping[str, Sequence[Mapping[str, Any]]]
    group_failures: Sequence[str]
    restart: Mapping[str, Any] | None
    placement: Sequence[Mapping[str, Any]] = ()
    """Placement conditions (`GangPlacement`), wire form without a transition time."""
    placement_waits: Sequence[str] = ()
    """Why multinode groups wait for the scheduler (appended to a not-ready message)."""
    rolling_update: Mapping[str, Any] | None = None
    """`status.rollingUpdate` of a managed worker rollout (None: never rolled)."""
    rolling_blocked: Sequence[str] = ()
    """Why the new worker generation is not ready yet (added to the Ready message)."""


def calculate_status(
    previous: DynamoGraphDeploymentStatus, observed: ObservedGraph, *, now: str
) -> DynamoGraphDeploymentStatus:
    """The status to report: state, the Ready condition, services (with groups) and restart.

    `previous` (the live status) only contributes the Ready condition's transition time.
    A multinode group that spent its restart budget fails the graph; one that is not Running
    (still starting, or restarting) keeps it pending even when its StatefulSets count as ready.
    The StatefulSet counters and the group phase come from different watch streams (the
    StatefulSet controller's status writes, the operator's own pod watch) that reach us in any
    order, so `successful` must wait for both: it then always means every group is Running.
    """
    readiness = observed.readiness
    state, reason, message = readiness.state, readiness.reason, readiness.message
    ready = readiness.ready
    waiting = _groups_not_running(observed.groups)
    if ready and waiting:
        state, reason, message = (
            STATE_PENDING,
            REASON_NOT_READY,
            "Multinode groups not running: " + "; ".join(waiting),
        )
        ready = False
    if observed.group_failures:
        state, reason, message = (
            STATE_FAILED,
            REASON_GROUP_FAILED,
            "; ".join(observed.group_failures),
        )
        ready = False
    if not ready and observed.placement_waits:
        message = "; ".join([message, *observed.placement_waits])
    rolling = observed.rolling_update
    rolling_on = rolling is not None and rolling.get("phase") in (
        ROLLING_PENDING,
        ROLLING_IN_PROGRESS,
    )
    if rolling_on and state != STATE_FAILED:
        # Dynamo: a rollout keeps the graph pending until it completes.
        state, reason, ready = STATE_PENDING, REASON_ROLLING_UPDATE, False
        message = "; ".join(["Rolling update in progress", *observed.rolling_blocked])
    services: dict[str, ServiceReplicaStatus] = {}
    for svc, entry in readiness.services.items():
        service = ServiceReplicaStatus.model_validate(entry)
        if svc in observed.groups:
            service.groups = [GroupStatus.model_validate(dict(g)) for g in observed.groups[svc]]
        services[svc] = service
    status = DynamoGraphDeploymentStatus.model_validate(
        {"state": state, "observedGeneration": observed.generation}
    )
    status.services = services
    if observed.restart is not None:
        status.restart = RestartStatus.model_validate(dict(observed.restart))
    if rolling is not None:
        status.rolling_update = RollingUpdateStatus.model_validate(dict(rolling))
    kept = {READY, *(str(c["type"]) for c in observed.placement)}
    status.conditions = [c.model_copy() for c in previous.conditions if c.type in kept]
    set_condition(status, ready_condition(ready, reason, message, observed.generation, now))
    for condition in observed.placement:
        set_condition(status, Condition.model_validate({**condition, "lastTransitionTime": now}))
    return status


def _groups_not_running(groups: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """`<group name>: <phase>` for every multinode group that is not Running."""
    return [
        f"{group.get('name')}: {group.get('phase')}"
        for svc in sorted(groups)
        for group in groups[svc]
        if group.get("phase") != GROUP_RUNNING
    ]


def rejected_status(
    previous: DynamoGraphDeploymentStatus,
    *,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> DynamoGraphDeploymentStatus:
    """`state: failed` and `Ready=False` naming the problems; services and restart kept as they were."""
    status = previous.model_copy(deep=True)
    status.state = STATE_FAILED
    status.conditions = [c for c in status.conditions if c.type == READY]
    set_condition(status, ready_condition(False, reason, message, generation, now))
    return status


def ready_condition(
    ready: bool, reason: str, message: str, generation: int | None, now: str
) -> Condition:
    """The `Ready` condition as of `now`."""
    return Condition.model_validate(
        {
            "type": READY,
            "status": "True" if ready else "False",
            "reason": reason,
            "message": message,
            "lastTransitionTime": now,
            "observedGeneration": generation,
        }
    )


def status_differs(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """True when writing `desired` would change the live status (transition times ignored)."""
    current = current or {}
    for key, value in desired.items():
        if key == "conditions":
            if _strip_times(current.get(key) or []) != _strip_times(value or []):
                return True
        elif current.get(key) != value:
            return True
    return False


def is_progress_only(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """True when `desired` differs from `current` only in progress details: the same state,
    observedGeneration, restart progress and Ready status/reason, with other replica counts or
    a different not-ready message. Such updates may be coalesced; transitions may not."""
    current = current or {}
    if not current:
        return False
    for key in ("state", "observedGeneration", "restart", "rollingUpdate"):
        if current.get(key) != desired.get(key):
            return False
    return _ready_verdict(current) == _ready_verdict(desired)


def _ready_verdict(status: Mapping[str, Any]) -> tuple[object, object]:
    for cond in status.get("conditions") or []:
        if cond.get("type") == READY:
            return cond.get("status"), cond.get("reason")
    return None, None


def _strip_times(conditions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        ({k: v for k, v in cond.items() if k != "lastTransitionTime"} for cond in conditions),
        key=lambda c: str(c.get("type")),
    )


@dataclass(frozen=True)
class StatusWrite:
    """Outcome of `write_status_if_changed`: written, or when to look again."""

    written: bool
    retry_after: float | None = None


async def write_status_if_changed(
    client: KubeAPI,
    key: Key,
    live: Mapping[str, Any] | None,
    status: DynamoGraphDeploymentStatus,
    memory: DgdMemory,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> StatusWrite:
    """Server-side apply `status` on the DGD `key` when it changed (the only status writer).

    `status` is calculated in the v1alpha1 shape; it is compared and written in the v1beta1
    shape of the storage version (`components`), which `live` is read in.
    """
    desired = status_to_v1beta1(dump_status(status))
    current = live or {}
    if not status_differs(current, desired):
        return StatusWrite(False)
    remembered = memory.written_status
    if remembered is not None and not status_differs(remembered, desired):
        return StatusWrite(False)  # our previous write has not reached the watch cache yet
    if is_progress_only(remembered if remembered is not None else current, desired):
        # Replica counts move pod by pod; write such progress at most once per interval
        # (the latest wins, via a delayed reconcile). Transitions are written at once.
        elapsed = clock() - memory.status_written_at
        if elapsed < STATUS_PROGRESS_INTERVAL_SECONDS:
            return StatusWrite(False, retry_after=STATUS_PROGRESS_INTERVAL_SECONDS - elapsed)
    namespace, name = key
    await client.apply(
        {
            "apiVersion": GROUP_VERSION_V1BETA1,
            "kind": DGD_KIND,
            "metadata": {"name": name, "namespace": namespace},
            "status": desired,
        },
        subresource="status",
    )
    memory.written_status = desired
    memory.status_written_at = clock()
    return StatusWrite(True)
