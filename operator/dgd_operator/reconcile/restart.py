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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dgd_operator.reconcile.constants import RESTART_COMPLETED, RESTART_RESTARTING


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
    if not is_new and previous.get("phase") == RESTART_COMPLETED:
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
