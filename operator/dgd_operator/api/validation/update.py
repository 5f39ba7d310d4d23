"""Dynamo's update-time rules: what may not change between the stored DGD and the new one."""

from __future__ import annotations

from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.api.validation.errors import Problem, service_path, show

_ROLLING_UPDATE_BUSY = ("Pending", "InProgress")


def update_problems(old: DynamoGraphDeployment, new: DynamoGraphDeployment) -> list[Problem]:
    """Dynamo's update rules between the stored DGD `old` and the proposed `new`."""
    problems: list[Problem] = []
    if old.spec.backend_framework != new.spec.backend_framework:
        problems.append(
            Problem(
                "spec.backendFramework",
                f"is immutable (was {show(old.spec.backend_framework)}, "
                f"now {show(new.spec.backend_framework)})",
            )
        )
    old_names, new_names = set(old.spec.services), set(new.spec.services)
    if old_names != new_names:
        parts = []
        if added := sorted(new_names - old_names):
            parts.append(f"services added: [{', '.join(added)}]")
        if removed := sorted(old_names - new_names):
            parts.append(f"services removed: [{', '.join(removed)}]")
        problems.append(
            Problem(
                "spec.services",
                "service topology is immutable and cannot be modified after creation: "
                + ", ".join(parts),
            )
        )
    for name in sorted(old_names & new_names):
        before, after = old.spec.services[name], new.spec.services[name]
        if before.is_multinode != after.is_multinode:
            was, now = (
                ("multinode", "single-node")
                if before.is_multinode
                else ("single-node", "multinode")
            )
            problems.append(
                Problem(
                    f"{service_path(name)}.multinode",
                    f"cannot change from {was} to {now} after creation",
                )
            )
        if before.topology_constraint != after.topology_constraint:
            problems.append(Problem(f"{service_path(name)}.topologyConstraint", "is immutable"))
    if old.spec.topology_constraint != new.spec.topology_constraint:
        problems.append(Problem("spec.topologyConstraint", "is immutable"))
    old_restart = old.spec.restart.id if old.spec.restart else None
    new_restart = new.spec.restart.id if new.spec.restart else None
    rolling = old.status.rolling_update if old.status else None
    if new_restart != old_restart and rolling is not None and rolling.phase in _ROLLING_UPDATE_BUSY:
        problems.append(
            Problem(
                "spec.restart.id",
                f"cannot change while a rolling update is {rolling.phase}",
            )
        )
    return problems
