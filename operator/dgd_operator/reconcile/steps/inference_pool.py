"""InferencePool: whether the cluster serves the Gateway API Inference Extension's pools.

A graph with an endpoint picker (`componentType: epp`) gets an InferencePool only when the API
server serves `inference.networking.k8s.io/v1` InferencePools (found through discovery, cached
like the PodGroup API); otherwise the graph still runs, no pool is applied (it would be refused),
and the `InferencePoolReady` condition says why (the admission webhook warns the same way).
"""

from __future__ import annotations

from typing import Any

from dgd_operator.api.constants import (
    CONDITION_INFERENCE_POOL,
    INFERENCE_POOL_GROUP_VERSION,
    INFERENCE_POOL_PLURAL,
    REASON_INFERENCE_POOL_API_MISSING,
    REASON_INFERENCE_POOL_CREATED,
)
from dgd_operator.builders.epp import INFERENCE_POOL_MISSING
from dgd_operator.reconcile.context import CONTINUE, ReconcileContext, StepResult, step_condition


def serves_inference_pools(document: dict[str, Any] | None) -> bool:
    """Whether an API discovery document lists the `inferencepools` resource."""
    resources = (document or {}).get("resources") or []
    return any(r.get("name") == INFERENCE_POOL_PLURAL for r in resources)


def inference_pool_condition(served: bool, generation: int | None) -> dict[str, Any]:
    """The `InferencePoolReady` condition of a graph with an endpoint picker."""
    if served:
        return step_condition(
            CONDITION_INFERENCE_POOL,
            "True",
            REASON_INFERENCE_POOL_CREATED,
            "the endpoint picker's InferencePool is applied",
            generation,
        )
    return step_condition(
        CONDITION_INFERENCE_POOL,
        "False",
        REASON_INFERENCE_POOL_API_MISSING,
        INFERENCE_POOL_MISSING,
        generation,
    )


async def discover_inference_pool(ctx: ReconcileContext) -> StepResult:
    """Find out (cached) whether InferencePools are served, for graphs with an EPP."""
    if not any(s.component_type == "epp" for s in ctx.built().spec.services.values()):
        return CONTINUE
    state = ctx.services.state
    if not state.inference_pool_api_fresh():
        document = await ctx.services.client.discover(f"/apis/{INFERENCE_POOL_GROUP_VERSION}")
        state.remember_inference_pool_api(serves_inference_pools(document))
    ctx.inference_pool_api = state.inference_pool_api
    # Reported with the other status conditions the steps add (kept across reconciles).
    ctx.placement.append(inference_pool_condition(ctx.inference_pool_api, ctx.generation))
    return CONTINUE
