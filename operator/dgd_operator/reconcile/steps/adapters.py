"""Adapters: write adapter-owned replica counts back into the DGD, refresh adapter status, and
create missing adapters.

A DynamoGraphDeploymentScalingAdapter owns its service's replica count (HPA, KEDA, the planner
or `kubectl scale` change it), so it is created once, initialised with the service's replicas,
and never re-applied: the operator never fights an autoscaler over `spec.replicas`. Adapters
of removed services are deleted by the children step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from dgd_operator.api.constants import (
    DGD_KIND,
    DGDSA_KIND,
    EVENT_ADAPTER_CREATED,
    EVENT_SCALED,
    GROUP_VERSION_V1BETA1,
)
from dgd_operator.controllerkit.kubeapi import Manifest
from dgd_operator.controllerkit.workers import raise_first
from dgd_operator.reconcile.context import CONTINUE, ReconcileContext, StepResult
from dgd_operator.reconcile.sync import AppliedRecord, child_key, manifest_hash


def replica_patch(body: Mapping[str, Any], counts: dict[str, dict[str, int]]) -> Manifest:
    """A merge patch of the v1beta1 DGD `body` setting `spec.components[name].replicas`.

    A merge patch replaces a list whole, so the patch carries every component as read, with
    the body's `resourceVersion` as a precondition: a component list changed meanwhile makes
    the API server answer 409 (the reconcile is retried) instead of losing that change.
    """
    components = [dict(c) for c in (body.get("spec") or {}).get("components") or []]
    for component in components:
        change = counts.get(str(component.get("name")))
        if change is not None:
            component["replicas"] = change["replicas"]
    version = (body.get("metadata") or {}).get("resourceVersion")
    return {"metadata": {"resourceVersion": version}, "spec": {"components": components}}


async def adapters(ctx: ReconcileContext) -> StepResult:
    """Sync replicas and status with the live adapters; create the adapters that are missing."""
    client = ctx.services.client
    memory = ctx.memory
    for name, status in ctx.adapter_statuses.items():
        await client.merge_patch(
            GROUP_VERSION_V1BETA1,
            DGDSA_KIND,
            ctx.namespace,
            name,
            {"status": status},
            subresource="status",
        )
        memory.adapter_status_written[name] = status
    if ctx.replica_patch:
        patch = replica_patch(ctx.body, ctx.replica_patch)
        live = await client.merge_patch(
            GROUP_VERSION_V1BETA1, DGD_KIND, ctx.namespace, ctx.name, patch
        )
        generation = int((live.get("metadata") or {}).get("generation") or 0)
        for svc, change in ctx.replica_patch.items():
            memory.patched_replicas[svc] = (change["replicas"], generation)
        for message in ctx.scaled_by_adapter:
            await ctx.event("Normal", EVENT_SCALED, message)

    records = ctx.services.state.namespace_records(ctx.namespace)
    new = [
        a
        for a in ctx.desired_adapters
        if child_key(a) not in ctx.live and child_key(a) not in records
    ]
    results = await asyncio.gather(*(ctx.apply(a) for a in new), return_exceptions=True)
    for adapter, result in zip(new, results, strict=True):
        if isinstance(result, BaseException):
            continue
        meta = result.get("metadata") or {}
        records[child_key(adapter)] = AppliedRecord(
            manifest_hash(adapter), meta.get("uid"), meta.get("generation")
        )
        ctx.outcome.applied += 1
        message = f"created {DGDSA_KIND}/{adapter['metadata']['name']} with {adapter['spec']['replicas']} replicas"
        await ctx.event("Normal", EVENT_ADAPTER_CREATED, message)
    raise_first(results)
    return CONTINUE
