"""Groups: restart multinode groups whose ranks failed as a whole (see `reconcile/groups.py`).

The planning is pure (`plan_group`); this step feeds it the group pods from the watch cache,
deletes the pods of groups that must restart (uid preconditions: exactly the incarnation that
was judged failed), posts the Events, and leaves each group's status entry for the status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from dgd_operator import metrics
from dgd_operator.api.constants import (
    EVENT_GROUP_FAILED,
    EVENT_GROUP_RESTART,
    LABEL_COMPONENT,
    LABEL_GROUP_INDEX,
)
from dgd_operator.reconcile.context import ReconcileContext, StepResult
from dgd_operator.reconcile.groups import (
    GROUP_FAILED,
    GroupMemory,
    GroupSpec,
    PodState,
    group_specs,
    plan_group,
)

logger = logging.getLogger(__name__)


def pods_by_group(
    pods: Sequence[Mapping[str, Any]],
) -> dict[tuple[str, int], list[Mapping[str, Any]]]:
    """Group pods by (service, group index) from their labels; unlabelled pods are left out."""
    found: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        try:
            ident = (str(labels[LABEL_COMPONENT]), int(labels[LABEL_GROUP_INDEX]))
        except (KeyError, ValueError):
            continue
        found.setdefault(ident, []).append(pod)
    return found


def previous_group(services: Mapping[str, Any], spec: GroupSpec) -> Mapping[str, Any] | None:
    """The group's entry in the previous `status.services`, if any."""
    for entry in (services.get(spec.service) or {}).get("groups") or []:
        if entry.get("index") == spec.index:
            return dict(entry)
    return None


def workload_identity(obj: Mapping[str, Any] | None) -> tuple[str, int]:
    """(uid, generation) of a live workload; a missing one is ("", 0)."""
    meta = (obj or {}).get("metadata") or {}
    generation = meta.get("generation")
    return str(meta.get("uid") or ""), generation if isinstance(generation, int) else 0


async def _restart_group(
    ctx: ReconcileContext,
    spec: GroupSpec,
    memory: GroupMemory,
    pods: Sequence[PodState],
    reason: str,
) -> None:
    """Delete every pod of a group; the StatefulSets recreate them."""
    for pod in pods:
        await ctx.services.client.delete("v1", "Pod", ctx.namespace, pod.name, uid=pod.uid)
    budget = ctx.services.group_policy.budget
    logger.warning(
        "restarting multinode group %s (restart %d, budget %d): %s",
        spec.name,
        memory.restarts,
        budget,
        reason,
    )
    in_window = len(memory.restart_times)
    await ctx.event(
        "Warning",
        EVENT_GROUP_RESTART,
        f"restarting multinode group {spec.name} ({in_window} of {budget} restarts in the budget window): {reason}",
    )


async def groups(ctx: ReconcileContext) -> StepResult:
    """Judge every multinode group against its pods; restart failed ones as a whole."""
    specs = group_specs(ctx.desired)
    memories = ctx.memory.groups
    if not specs:
        memories.clear()
        return StepResult()
    previous = (ctx.status_view or {}).get("services") or {}
    pods = pods_by_group(ctx.services.view.group_pods(ctx.key))
    workloads_live = {(ck[1], ck[2]): obj for ck, obj in (*ctx.live.items(), *ctx.fresh.items())}
    now = ctx.services.wall_clock().timestamp()
    requeue: list[float] = []
    for spec in specs:
        ident = (spec.service, spec.index)
        memory = memories.get(ident)
        if memory is None:
            memory = memories[ident] = GroupMemory.from_status(previous_group(previous, spec))
        workloads = tuple(
            workload_identity(workloads_live.get(("StatefulSet", name))) for name in spec.workloads
        )
        decision = plan_group(
            memory, spec, pods.get(ident, []), workloads, ctx.services.group_policy, now
        )
        if decision.delete:
            await _restart_group(ctx, spec, memory, decision.delete, decision.reason)
        if decision.exhausted:
            metrics.RECONCILE_ERRORS.labels(reason="group_restart_budget").inc()
            await ctx.event("Warning", EVENT_GROUP_FAILED, decision.reason)
        if decision.requeue_after is not None:
            requeue.append(decision.requeue_after)
        ctx.groups.setdefault(spec.service, []).append(memory.status(spec))
        if memory.phase == GROUP_FAILED and memory.failed_reason:
            ctx.group_failures.append(memory.failed_reason)
    wanted = {(spec.service, spec.index) for spec in specs}
    for ident in set(memories) - wanted:
        del memories[ident]
    return StepResult(requeue_after=min(requeue) if requeue else None)
