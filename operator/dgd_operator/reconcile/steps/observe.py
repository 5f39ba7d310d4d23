"""Observe: read the DGD's children from the watch cache, validate the spec, and plan in memory
what its adapters and its restart request ask for. No API call."""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import orjson

from dgd_operator.api.constants import EVENT_INVALID_SPEC, REASON_INVALID_SPEC
from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.api.validation import Problem, validate_dgd
from dgd_operator.reconcile.context import CONTINUE, ReconcileContext, RejectedError, StepResult
from dgd_operator.reconcile.restart import plan_graph_restart
from dgd_operator.reconcile.scaling import plan_adapter_sync
from dgd_operator.reconcile.state import SpecMemo
from dgd_operator.reconcile.sync import child_key, is_owned_by


def rfc3339(moment: datetime.datetime) -> str:
    """`moment` in Kubernetes' RFC 3339 form (seconds, UTC)."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


VOLATILE_METADATA = frozenset({"resourceVersion", "managedFields"})
"""Metadata the API server changes on every write, status writes included; nothing the
validation or the builders read."""


def spec_fingerprint(body: Mapping[str, Any]) -> str:
    """sha256 of everything in a stored DGD that validation and the builders may read.

    That is all of it but `status` and the volatile metadata, so our own status writes keep
    the fingerprint. Keys are not sorted: the watch hands an unchanged object over with the
    same key order, and another order would only cost one validation more. Only compared
    within one process, so any deterministic encoding does: orjson where it can.
    """
    meta = body.get("metadata") or {}
    doc = {k: v for k, v in body.items() if k not in ("status", "metadata")}
    doc["metadata"] = {k: v for k, v in meta.items() if k not in VOLATILE_METADATA}
    try:
        encoded = orjson.dumps(doc, default=str)
    except TypeError:  # orjson.JSONEncodeError: big ints, non-str keys
        encoded = json.dumps(doc, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(encoded).hexdigest()


def validated(ctx: ReconcileContext) -> DynamoGraphDeployment:
    """Parse and validate the stored DGD; raise `RejectedError` naming every problem.

    The stored object is the hub (v1beta1); its rules are checked on it, and those of its
    v1alpha1 view (reference §5.4) on that view, all named at v1beta1 paths. Dynamo's update
    rules (immutable service set, backend, topology) and its v1beta1 image rules (which depend
    on the version a request was written in) belong to admission; the reconcile acts on
    whatever spec is stored, so a removed service has its children deleted and a changed
    framework or node count rebuilds them.
    """
    # The body is the watch cache's object, shared by every reader: validation never changes
    # its input and its model shares nothing with it (the builders read the model of a
    # converted copy), so it is handed over as it is, without its status.
    doc = {k: v for k, v in ctx.body.items() if k != "status"}
    result = validate_dgd(doc, creating=ctx.generation in (None, 1), images=False, keep_hub=False)
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
    fingerprint = spec_fingerprint(ctx.body)
    memory = ctx.memory
    if memory.spec is not None and memory.spec.fingerprint == fingerprint:
        dgd = memory.spec.dgd
        ctx.services.state.memoised(ctx.key)
    else:
        dgd = validated(ctx)
        memory.spec = memory.build = None
        if memory.seen_spec == fingerprint:  # reconciled again: worth remembering
            memory.spec = SpecMemo(fingerprint, dgd)
            ctx.services.state.memoised(ctx.key)
        memory.seen_spec = fingerprint
    sync = plan_adapter_sync(
        dgd,
        uid=uid,
        live=ctx.live,
        patched=ctx.memory.patched_replicas,
        written_statuses=ctx.memory.adapter_status_written,
        now=rfc3339(ctx.services.wall_clock()),
    )
    if sync.replicas:
        dgd = dgd.model_copy(deep=True)  # the remembered spec stays as stored
    for svc, replicas in sync.replicas.items():
        dgd.spec.services[svc].replicas = replicas  # the adapter owns the count
    ctx.spec_fingerprint, ctx.adapter_replicas = fingerprint, dict(sync.replicas)
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
