"""Observe: read the DGD's children from the watch cache, validate the spec, and plan in memory
what its adapters and its restart request ask for. No API call."""

from __future__ import annotations

import copy
import datetime

from dgd_operator.api.constants import EVENT_INVALID_SPEC, REASON_INVALID_SPEC
from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.api.validation import Problem, validate_dgd
from dgd_operator.reconcile.context import CONTINUE, ReconcileContext, RejectedError, StepResult
from dgd_operator.reconcile.restart import plan_graph_restart
from dgd_operator.reconcile.scaling import plan_adapter_sync
from dgd_operator.reconcile.sync import child_key, is_owned_by


def rfc3339(moment: datetime.datetime) -> str:
    """`moment` in Kubernetes' RFC 3339 form (seconds, UTC)."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def validated(ctx: ReconcileContext) -> DynamoGraphDeployment:
    """Parse and validate the stored DGD; raise `RejectedError` naming every problem.

    The stored object is the hub (v1beta1); its rules are checked on it, and those of its
    v1alpha1 view (reference §5.4) on that view, all named at v1beta1 paths. Dynamo's update
    rules (immutable service set, backend, topology) and its v1beta1 image rules (which depend
    on the version a request was written in) belong to admission; the reconcile acts on
    whatever spec is stored, so a removed service has its children deleted and a changed
    framework or node count rebuilds them.
    """
    doc = {k: copy.deepcopy(v) for k, v in ctx.body.items() if k != "status"}
    result = validate_dgd(doc, creating=ctx.generation in (None, 1), images=False)
    if result.errors or result.dgd is None:
        problems = result.errors or [Problem("spec", "not a valid DynamoGraphDeployment")]
        raise RejectedError(problems, reason=REASON_INVALID_SPEC, event_reason=EVENT_INVALID_SPEC)
    return result.dgd


async def observe(ctx: ReconcileContext) -> StepResult:
    """Fill the context with the live children, the typed DGD and the in-memory plans."""
    uid = ctx.uid
    ctx.live_children = [
        obj
        for obj in ctx.services.view.children(ctx.key)
        if is_owned_by(obj, uid) or not (obj.get("metadata") or {}).get("ownerReferences")
    ]
    ctx.live = {child_key(obj): obj for obj in ctx.live_children}
    dgd = validated(ctx)
    sync = plan_adapter_sync(
        dgd,
        uid=uid,
        live=ctx.live,
        patched=ctx.memory.patched_replicas,
        written_statuses=ctx.memory.adapter_status_written,
        now=rfc3339(ctx.services.wall_clock()),
    )
    for svc, replicas in sync.replicas.items():
        dgd.spec.services[svc].replicas = replicas  # the adapter owns the count
    ctx.replica_patch, ctx.scaled_by_adapter, ctx.adapter_statuses = (
        sync.spec_patch,
        sync.scaled,
        sync.statuses,
    )
    ctx.dgd = dgd
    ctx.restart = plan_graph_restart(
        dgd, (ctx.body.get("status") or {}).get("restart"), ctx.live_children
    )
    return CONTINUE
