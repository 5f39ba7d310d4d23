"""Children: write what changed (concurrently, in two waves) and delete what is no longer wanted.

Watched kinds are compared with the watch cache; the few unwatched ones (Secrets) are read
with a GET first. Only children whose hash or generation says so are written (`sync.plan_sync`),
so a converged graph costs no write. What changed is told in one Event per kind of change,
posted together with the status write.

A missing child is created with a POST (under our field manager), an existing one changed with
server-side apply: a POST costs the API server a fraction of an apply that creates (measured in
`benchmarks/operator_scale.py`). Before the first apply to a child we POSTed, its ownership is
folded into our apply entry (`controllerkit.ownership`), so fields later left out of the
manifest are removed just as if the child had been created by apply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from dgd_operator.api.constants import DGDSA_KIND, EVENT_ADAPTER_DELETED, LABEL_GRAPH, MANAGED_BY
from dgd_operator.controllerkit.kubeapi import ConflictError, KubeAPI, NotFoundError
from dgd_operator.controllerkit.ownership import apply_upgrade_patch
from dgd_operator.controllerkit.workers import raise_first, run_all
from dgd_operator.reconcile.context import CONTINUE, ReconcileContext, StepResult
from dgd_operator.reconcile.notices import change_notices
from dgd_operator.reconcile.readiness import WORKLOAD_KINDS
from dgd_operator.reconcile.resources import INFERENCE_POOL, ISTIO_KINDS, WATCHED
from dgd_operator.reconcile.sync import (
    AppliedRecord,
    ApplyAction,
    ChildKey,
    Manifest,
    child_key,
    is_owned_by,
    plan_sync,
)


def apply_waves(actions: Sequence[ApplyAction]) -> list[list[ApplyAction]]:
    """Split applies into waves: everything else first, then the workloads (pods) that use it."""
    support = [a for a in actions if a.manifest.get("kind") not in WORKLOAD_KINDS]
    workloads = [a for a in actions if a.manifest.get("kind") in WORKLOAD_KINDS]
    return [wave for wave in (support, workloads) if wave]


async def write_child(ctx: ReconcileContext, action: ApplyAction) -> Manifest:
    """Create a missing child with a POST; change an existing one with server-side apply."""
    manifest = action.manifest
    live = action.live
    if live is None:
        try:
            return await ctx.create(manifest)
        except ConflictError:
            # It exists after all (the watch cache had not caught up): read it and apply.
            meta = manifest["metadata"]
            live = await ctx.services.client.get(
                manifest["apiVersion"], manifest["kind"], ctx.namespace, meta["name"]
            )
    if live is not None and apply_upgrade_patch(live, MANAGED_BY) is not None:
        await fold_ownership(ctx.services.client, manifest, ctx.namespace)
    return await ctx.apply(manifest)


async def fold_ownership(
    client: KubeAPI, manifest: Manifest, namespace: str, attempts: int = 3
) -> None:
    """Fold our create-time ownership of `manifest`'s live object (in `namespace`) into our
    apply entry.

    The patch replaces the whole `managedFields` list, so it is computed from a fresh read,
    never from the watch cache: the cache drops other managers' entries (`handlers.slim`), and
    a patch built from it would erase their ownership (a controller's, a user's `kubectl`
    edit). The read is needed once per child, before the first apply after its create. A
    write by someone else between the read and the patch fails the patch's resourceVersion
    precondition; it is read and folded again.
    """
    meta = manifest["metadata"]
    where = (manifest["apiVersion"], manifest["kind"], namespace, meta["name"])
    for attempt in range(attempts):
        live = await client.get(*where)
        upgrade = apply_upgrade_patch(live, MANAGED_BY) if live is not None else None
        if upgrade is None:
            return  # gone (the apply re-creates it) or already folded
        try:
            await client.json_patch(*where, upgrade)
            return
        except ConflictError:
            if attempt == attempts - 1:
                raise


async def _delete(ctx: ReconcileContext, obj: Mapping[str, Any]) -> bool:
    meta = obj["metadata"]
    ctx.services.state.child_deleted(ctx.namespace, child_key(obj))
    return await ctx.services.client.delete(
        obj["apiVersion"], obj["kind"], ctx.namespace, meta["name"], uid=meta.get("uid")
    )


# Kinds of optional APIs (maybe not served) that a graph may stop wanting: not watched, so when
# the graph's spec changes they are listed by its label to find the ones to prune.
OPTIONAL_KINDS = (INFERENCE_POOL, *ISTIO_KINDS)


async def _optional_children(ctx: ReconcileContext) -> list[Mapping[str, Any]]:
    """The graph's live children of optional kinds, listed once per spec change.

    The first reconcile of a graph (after an operator start, too) only remembers the generation:
    listing every graph's optional kinds on start would cost 3 LISTs per graph for objects that
    are pruned only when a spec change drops them. An epp removed while the operator was down
    keeps its InferencePool until the next spec change or the graph's deletion (owner GC).
    """
    seen = ctx.memory.optional_kinds_generation
    ctx.memory.optional_kinds_generation = ctx.generation
    if seen is None or seen == ctx.generation:
        return []
    found: list[Mapping[str, Any]] = []
    for rk in OPTIONAL_KINDS:
        try:
            found.extend(
                await ctx.services.client.list(
                    rk.api_version,
                    rk.kind,
                    ctx.namespace,
                    label_selector=f"{LABEL_GRAPH}={ctx.name}",
                )
            )
        except NotFoundError:  # the API is not served: nothing of that kind exists
            continue
    return found


async def children(ctx: ReconcileContext) -> StepResult:
    """Apply changed children wave by wave, then prune children and adapters not wanted."""
    client = ctx.services.client
    namespace = ctx.namespace
    unwatched = [obj for obj in ctx.desired if (obj["apiVersion"], obj["kind"]) not in WATCHED]
    found = await run_all(
        [
            client.get(obj["apiVersion"], obj["kind"], namespace, obj["metadata"]["name"])
            for obj in unwatched
        ]
    )
    live: dict[ChildKey, Mapping[str, Any]] = dict(ctx.live)
    for obj, current in zip(unwatched, found, strict=True):
        if current is not None:
            live[child_key(obj)] = current
    for listed in await _optional_children(ctx):
        live.setdefault(child_key(listed), listed)

    records = ctx.services.state.namespace_records(namespace)
    regular_live = {ck: obj for ck, obj in live.items() if ck[1] != DGDSA_KIND}
    plan = plan_sync(ctx.desired, regular_live, records, ctx.uid, stamp=ctx.digests)
    for wave in apply_waves(plan.apply):
        # Children of one wave go out concurrently; workloads wait for the wave before them,
        # so no pod starts before its ServiceAccount, ConfigMap or PVC exists. Every apply of
        # the wave is awaited; those that succeeded are recorded, then the first failure (in
        # plan order) fails the reconcile.
        results = await asyncio.gather(
            *(write_child(ctx, action) for action in wave), return_exceptions=True
        )
        for action, result in zip(wave, results, strict=True):
            if isinstance(result, BaseException):
                continue
            ck = child_key(action.manifest)
            meta = result.get("metadata") or {}
            records[ck] = AppliedRecord(action.digest, meta.get("uid"), meta.get("generation"))
            ctx.fresh[ck] = result
            ctx.outcome.applied += 1
        raise_first(results)

    gone = await run_all([_delete(ctx, doomed) for doomed in plan.delete])
    deleted = [
        f"{d['kind']}/{d['metadata']['name']}"
        for d, was in zip(plan.delete, gone, strict=True)
        if was
    ]
    ctx.outcome.deleted = len(deleted)
    ctx.notices.extend(change_notices(plan.apply, deleted))

    wanted_adapters = {child_key(adapter) for adapter in ctx.desired_adapters}
    doomed_adapters = [
        existing
        for ck, existing in sorted(live.items())
        if ck[1] == DGDSA_KIND and ck not in wanted_adapters and is_owned_by(existing, ctx.uid)
    ]
    removed = await run_all([_delete(ctx, adapter) for adapter in doomed_adapters])
    for adapter, was_deleted in zip(doomed_adapters, removed, strict=True):
        if was_deleted:
            await ctx.event(
                "Normal",
                EVENT_ADAPTER_DELETED,
                f"deleted {DGDSA_KIND}/{adapter['metadata']['name']}",
            )
    ctx.live = live
    return CONTINUE
