"""DynamoGraphDeploymentScalingAdapters for services with `scalingAdapter.enabled` (§4.8)."""

from __future__ import annotations

from dgd_operator.api import constants
from dgd_operator.api.constants import DGDSA_KIND, GROUP_VERSION
from dgd_operator.api.k8s import Manifest
from dgd_operator.api.naming import adapter_name
from dgd_operator.builders.context import ServiceContext
from dgd_operator.builders.labels import object_metadata


def build_scaling_adapter(ctx: ServiceContext) -> Manifest | None:
    """DGDSA `<dgd>-<lower(svc)>` seeded with the service's replicas (default 1), if enabled.

    After creation the adapter's `spec.replicas` belongs to its scaler (HPA, KEDA, planner),
    and its controller writes it back into the DGD, so this value follows the DGD.
    """
    adapter = ctx.spec.scaling_adapter
    if adapter is None or not adapter.enabled:
        return None
    labels = {constants.LABEL_COMPONENT: ctx.service}
    return {
        "apiVersion": GROUP_VERSION,
        "kind": DGDSA_KIND,
        "metadata": object_metadata(ctx.graph, adapter_name(ctx.graph.name, ctx.service), labels),
        "spec": {
            "replicas": ctx.spec.replicas if ctx.spec.replicas is not None else 1,
            "dgdRef": {"name": ctx.graph.name, "serviceName": ctx.service},
        },
    }
