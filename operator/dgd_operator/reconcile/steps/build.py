"""Build: every desired child of the DGD, from the pure builders."""

from __future__ import annotations

import dataclasses

from dgd_operator.api.constants import DGDSA_KIND, EVENT_INVALID_SPEC, REASON_INVALID_SPEC
from dgd_operator.api.validation import Problem
from dgd_operator.builders.errors import BuildError
from dgd_operator.builders.graph import plan_graph
from dgd_operator.reconcile.context import CONTINUE, ReconcileContext, RejectedError, StepResult


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
    try:
        graph = plan_graph(
            ctx.built(),
            ctx.namespace,
            options,
            restart_annotations=restarts,
            worker_hash=ctx.worker_hash,
        )
    except BuildError as exc:
        problem = Problem(exc.path, exc.message)
        raise RejectedError(
            [problem], reason=REASON_INVALID_SPEC, event_reason=EVENT_INVALID_SPEC
        ) from exc
    ctx.graph = graph
    ctx.desired = [obj for obj in graph.objects if obj["kind"] != DGDSA_KIND]
    ctx.desired_adapters = [obj for obj in graph.objects if obj["kind"] == DGDSA_KIND]
    return CONTINUE
