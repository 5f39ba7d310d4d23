"""Rolling restarts requested through `spec.restart` (pure planning, Dynamo §4.6 semantics).

A restart stamps `nvidia.com/restartAt: <id>` on a service's pod template, which rolls its
workload. Services already stamped keep their value, so a finished restart never rolls again
and an operator restart never re-rolls anything. The plan is derived from the live pod
templates each time (level-based): `status.restart` only reports progress.

- `Parallel`: every service is stamped at once; done when all are rolled out and ready.
- `Sequential` (default): services in `strategy.order` (default: alphabetical) one at a time;
  the next one is stamped only after the previous one rolled out and is ready.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dgd_operator.api.constants import (
    ANNOTATION_RESTART_AT,
    EVENT_RESTART_COMPLETED,
    EVENT_RESTART_STARTED,
    RESTART_COMPLETED,
    RESTART_RESTARTING,
    RESTART_SUPERSEDED,
)
from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.reconcile.readiness import WORKLOAD_KINDS, object_readiness, service_of


@dataclass(frozen=True)
class RestartRequest:
    """The parts of `spec.restart` the planner needs."""

    id: str
    parallel: bool = False
    order: tuple[str, ...] = ()


@dataclass
class RestartPlan:
    """Pod-template restart annotations to build with, and the `status.restart` to report."""

    annotations: dict[str, str]
    status: dict[str, Any] | None
    started: bool = False
    completed: bool = False
    stamped: list[str] = field(default_factory=list)


def plan_restart(
    request: RestartRequest | None,
    services: Sequence[str],
    live_ids: Mapping[str, str],
    done: Mapping[str, bool],
    previous: Mapping[str, Any] | None,
) -> RestartPlan:
    """Decide which services carry which restart id.

    `live_ids` holds the restart id currently on each service's live pod template; `done[svc]`
    says whether the service's workloads are rolled out and ready with that template.
    """
    annotations = {svc: value for svc, value in live_ids.items() if svc in services and value}
    if request is None:
        return RestartPlan(annotations, dict(previous) if previous else None)
    previous = previous or {}
    is_new = previous.get("observedID") != request.id
    if not is_new and previous.get("phase") in (RESTART_COMPLETED, RESTART_SUPERSEDED):
        # Done, or superseded by a worker rolling update (whose new pods are fresh anyway).
        return RestartPlan(annotations, dict(previous))

    stamped: list[str] = []
    in_progress: list[str] = []
    if request.parallel:
        for svc in sorted(services):
            if annotations.get(svc) != request.id:
                stamped.append(svc)
            annotations[svc] = request.id
            if not (live_ids.get(svc) == request.id and done.get(svc, False)):
                in_progress.append(svc)
    else:
        order = [svc for svc in request.order if svc in services] or sorted(services)
        order += [svc for svc in sorted(services) if svc not in order]
        for svc in order:
            if live_ids.get(svc) == request.id and done.get(svc, False):
                continue
            if annotations.get(svc) != request.id:
                stamped.append(svc)
            annotations[svc] = request.id
            in_progress = [svc]
            break
    phase = RESTART_RESTARTING if in_progress else RESTART_COMPLETED
    status = {"observedID": request.id, "phase": phase, "inProgress": in_progress}
    return RestartPlan(
        annotations,
        status,
        started=is_new,
        completed=phase == RESTART_COMPLETED,
        stamped=stamped,
    )


def restart_id(obj: Mapping[str, Any]) -> str:
    """The restart id stamped on a workload's pod template ("" when none)."""
    template = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return str((template.get("annotations") or {}).get(ANNOTATION_RESTART_AT) or "")


def plan_graph_restart(
    dgd: DynamoGraphDeployment,
    previous: Mapping[str, Any] | None,
    live_children: Iterable[Mapping[str, Any]],
) -> RestartPlan:
    """`plan_restart` for a graph: its `spec.restart`, its live workloads, `status.restart`."""
    services = sorted(dgd.spec.services)
    workloads: dict[str, list[Mapping[str, Any]]] = {}
    for obj in live_children:
        if obj.get("kind") in WORKLOAD_KINDS:
            svc = service_of(obj)
            if svc is not None:
                workloads.setdefault(svc, []).append(obj)
    live_ids: dict[str, str] = {}
    for svc, objs in workloads.items():
        ids = sorted({restart_id(obj) for obj in objs} - {""})
        if ids:
            live_ids[svc] = ids[-1]
    request: RestartRequest | None = None
    spec_restart = dgd.spec.restart
    if spec_restart is not None:
        strategy = spec_restart.strategy
        request = RestartRequest(
            id=spec_restart.id,
            parallel=strategy is not None and strategy.type == "Parallel",
            order=tuple(strategy.order) if strategy is not None else (),
        )
    done = {
        svc: bool(objs)
        and request is not None
        and all(restart_id(obj) == request.id and object_readiness(obj).ready for obj in objs)
        for svc, objs in workloads.items()
    }
    return plan_restart(request, services, live_ids, done, previous)


def restart_notices(plan: RestartPlan, previous: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(Event reason, message) telling the progress `plan` makes over `previous` status."""
    if plan.status is None or plan.status == previous:
        return []
    before: Mapping[str, Any] = previous or {}
    restart = plan.status.get("observedID")
    notices: list[tuple[str, str]] = []
    if plan.started and before.get("observedID") != restart:
        notices.append((EVENT_RESTART_STARTED, f"restart {restart} started"))
    if plan.stamped:
        notices.append(
            (EVENT_RESTART_STARTED, f"restart {restart}: restarting {', '.join(plan.stamped)}")
        )
    if plan.status.get("phase") == RESTART_COMPLETED and before.get("phase") != RESTART_COMPLETED:
        notices.append((EVENT_RESTART_COMPLETED, f"restart {restart} completed"))
    return notices
