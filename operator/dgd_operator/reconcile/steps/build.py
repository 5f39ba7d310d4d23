"""Build: every desired child of the DGD, from the pure builders.

The builders read the v1alpha1 view of the stored v1beta1 graph (`ctx.dgd`, derived in
`observe`), as Dynamo's controller does where its rendering depends on it: the
`nvidia.com/dynamo-sub-component-type` label and the preserved v1alpha1 service annotations and
labels (reference §2.6), and the alpha-only fields of §5.4 (`pvcs`, `volumeMounts`, `ingress`,
...), which the hub keeps in the `nvidia.com/dgd-spec` annotation only. Rendering from the view
is what keeps `dgd render` of both versions identical.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from dgd_operator.api.constants import (
    DGDSA_KIND,
    EVENT_INVALID_SPEC,
    GROUP_VERSION_V1BETA1,
    REASON_INVALID_SPEC,
)
from dgd_operator.api.conversion import scaling_adapter_to
from dgd_operator.api.validation import Problem
from dgd_operator.builders.errors import BuildError
from dgd_operator.builders.graph import plan_graph
from dgd_operator.builders.options import BuildOptions
from dgd_operator.reconcile.context import CONTINUE, ReconcileContext, RejectedError, StepResult
from dgd_operator.reconcile.state import BuildMemo
from dgd_operator.reconcile.sync import DigestMemo


async def build(ctx: ReconcileContext) -> StepResult:
    """Build the children (adapters apart); a spec the builders refuse is rejected."""
    services = ctx.services
    options = services.options
    if services.settings.image_pull_secret_discovery:
        options = dataclasses.replace(
            options, image_pull_secrets=services.view.pull_secrets(ctx.namespace)
        )
    options = dataclasses.replace(
        options, pod_group_api=ctx.pod_group_api, inference_pool_api=ctx.inference_pool_api
    )
    restarts = ctx.restart.annotations if ctx.restart is not None else {}
    # Everything `plan_graph` reads: the builders are pure, so equal inputs build equal children.
    inputs = (
        ctx.spec_fingerprint,
        tuple(sorted(ctx.adapter_replicas.items())),
        ctx.namespace,
        options,
        tuple(sorted(restarts.items())),
        ctx.worker_hash,
    )
    memo = ctx.memory.build
    if memo is None or memo.inputs != inputs:
        memo = built_children(ctx, inputs, options, restarts)
        if ctx.memory.spec is not None:  # the graph's memos are kept (`steps.observe`)
            ctx.memory.build = memo
    ctx.graph = memo.graph
    ctx.desired = list(memo.desired)  # later steps replace entries (a rollout resizes)
    ctx.desired_adapters = list(memo.adapters)
    ctx.digests = memo.digests
    return CONTINUE


def built_children(
    ctx: ReconcileContext,
    inputs: tuple[object, ...],
    options: BuildOptions,
    restarts: Mapping[str, str],
) -> BuildMemo:
    """Run the builders; a spec they refuse is rejected."""
    try:
        graph = plan_graph(
            ctx.built(),
            ctx.namespace,
            options,
            restart_annotations=dict(restarts),
            worker_hash=ctx.worker_hash,
        )
    except BuildError as exc:
        problem = Problem(exc.path, exc.message)
        raise RejectedError(
            [problem], reason=REASON_INVALID_SPEC, event_reason=EVENT_INVALID_SPEC
        ) from exc
    desired = tuple(obj for obj in graph.objects if obj["kind"] != DGDSA_KIND)
    # Adapters are created at the storage version (no conversion webhook in the way); the
    # builders, like `dgd render`, keep emitting them at v1alpha1.
    adapters = tuple(
        scaling_adapter_to(obj, GROUP_VERSION_V1BETA1)
        for obj in graph.objects
        if obj["kind"] == DGDSA_KIND
    )
    return BuildMemo(inputs, graph, desired, adapters, DigestMemo(desired))
