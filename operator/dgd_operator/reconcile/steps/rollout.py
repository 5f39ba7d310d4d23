"""Rollout: managed worker generations (planning in `dgd_operator.reconcile.rollout`).

Two steps around `build`:
- `worker_generation` (before build) computes the worker hash of the spec, which names the
  generation the builders build, and supersedes a restart requested during a rollout;
- `rollout` (after build, before children) sets the current generation's replica counts,
  scales the older generations (merge patches of `spec.replicas`, only when they change),
  deletes them once every worker service is updated, and keeps them out of the children
  step's pruning until then. A converged graph costs no write here either.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from dgd_operator.api.constants import (
    LABEL_COMPONENT,
    LABEL_DYNAMO_NAMESPACE,
    LABEL_SELECTOR,
)
from dgd_operator.api.conversion import rolling_update_to_v1alpha1
from dgd_operator.controllerkit.workers import run_all
from dgd_operator.reconcile.context import CONTINUE, ReconcileContext, StepResult
from dgd_operator.reconcile.restart import restart_id
from dgd_operator.reconcile.rollout import (
    ROLLING_ACTIVE,
    current_worker_hash,
    old_generations,
    plan_rollout,
    pod_causes,
    restart_superseded_notice,
    supersede_restart,
    worker_services,
)
from dgd_operator.reconcile.steps.observe import rfc3339
from dgd_operator.reconcile.sync import child_key

ROLLOUT_RECHECK_SECONDS = 1.0
"""How soon a graph with a rollout under way is looked at again (phase moves, pod causes)."""


def _previous(ctx: ReconcileContext) -> Mapping[str, Any] | None:
    """The last `status.rollingUpdate`: our own last write (the watch cache may lag behind it)."""
    status = ctx.memory.written_status or ctx.body.get("status") or {}
    value = status.get("rollingUpdate")
    if not isinstance(value, dict):
        return None
    # Status is written at v1beta1 (`updatedComponents`); the planner speaks the v1alpha1 view.
    return rolling_update_to_v1alpha1(value)


async def worker_generation(ctx: ReconcileContext) -> StepResult:
    """Name the current worker generation; a restart asked for during a rollout is superseded."""
    current = current_worker_hash(ctx.built())
    if current is None:
        return CONTINUE
    ctx.worker_hash, names = current
    services = sorted(names)
    rolling = bool(old_generations(ctx.live_children, services, names))
    previous = _previous(ctx) or {}
    if ctx.restart is not None and (rolling or previous.get("phase") in ROLLING_ACTIVE):
        live_ids: dict[str, str] = {}
        for obj in ctx.live_children:
            stamp = restart_id(obj) if obj.get("kind") == "Deployment" else ""
            svc = ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_COMPONENT)
            if stamp and svc:
                live_ids[str(svc)] = max(stamp, live_ids.get(str(svc), ""))
        superseded = supersede_restart(ctx.restart, live_ids)
        if superseded is not ctx.restart:
            before = (ctx.body.get("status") or {}).get("restart")
            ctx.status_notices.extend(restart_superseded_notice(superseded, before))
            ctx.restart = superseded
    return CONTINUE


async def rollout(ctx: ReconcileContext) -> StepResult:
    """Scale the generations, delete the old ones when done, report `status.rollingUpdate`."""
    dgd = ctx.built()
    now = rfc3339(ctx.services.wall_clock())
    services = worker_services(dgd) if ctx.worker_hash is not None else []
    assert ctx.graph is not None, "build step did not run"
    index = {
        obj["metadata"]["name"]: i
        for i, obj in enumerate(ctx.desired)
        if obj["kind"] == "Deployment"
    }
    desired = {svc: ctx.desired[index[ctx.graph.services[svc].names[0]]] for svc in services}
    plan = plan_rollout(
        ctx.worker_hash, services, desired, ctx.live_children, _previous(ctx), now=now
    )
    ctx.rollout = plan
    for svc, component in plan.components.items():
        built = desired[svc]
        if built["spec"].get("replicas") != component.new_replicas:
            resized = copy.copy(built)
            resized["spec"] = {**built["spec"], "replicas": component.new_replicas}
            ctx.desired[index[built["metadata"]["name"]]] = resized
    client = ctx.services.client
    old = [obj for objs in plan.old.values() for obj in objs]
    for obj in old:
        ctx.live.pop(child_key(obj), None)  # ours to scale and delete, not the pruner's
    if plan.complete:
        for obj in old:
            ctx.services.state.child_deleted(ctx.namespace, child_key(obj))
        await run_all(
            [
                client.delete("apps/v1", "Deployment", ctx.namespace, o["metadata"]["name"],
                              uid=o["metadata"].get("uid"))
                for o in old
            ]
        )  # fmt: skip
        ctx.outcome.deleted += len(old)
        ctx.status_notices.extend(plan.notices)
        return CONTINUE
    patches = [
        (obj, target)
        for component in plan.components.values()
        for obj in plan.old.get(component.service, [])
        if (target := component.old_replicas.get(obj["metadata"]["name"])) is not None
        and (obj.get("spec") or {}).get("replicas") != target
    ]
    await run_all(
        [
            client.merge_patch("apps/v1", "Deployment", ctx.namespace, obj["metadata"]["name"],
                               {"spec": {"replicas": target}})
            for obj, target in patches
        ]
    )  # fmt: skip
    ctx.outcome.applied += len(patches)
    ctx.status_notices.extend(plan.notices)
    if not plan.active:
        return CONTINUE
    if plan.blocked:
        plan.blocked.extend(await _new_pod_causes(ctx, desired))
    return StepResult(requeue_after=ROLLOUT_RECHECK_SECONDS)


async def _new_pod_causes(ctx: ReconcileContext, desired: Mapping[str, Any]) -> list[str]:
    """Why the new generation's pods are not ready (one LIST per worker service, reads only)."""
    client = ctx.services.client
    pods = await run_all(
        [
            client.list("v1", "Pod", ctx.namespace,
                        label_selector=f"{LABEL_SELECTOR}={obj['metadata']['name']}")
            for obj in desired.values()
        ]
    )  # fmt: skip
    return pod_causes(pod for found in pods for pod in found)


def base_namespace(deployment: Mapping[str, Any]) -> str:
    """The base runtime namespace a worker Deployment's pods are labelled with."""
    template = (deployment.get("spec") or {}).get("template") or {}
    return str(
        ((template.get("metadata") or {}).get("labels") or {}).get(LABEL_DYNAMO_NAMESPACE, "")
    )
