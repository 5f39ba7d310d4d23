"""`modelRef`: the base-model labels of a component's pods and the model's headless Service.

Pods of a component that declares `modelRef` carry the label `nvidia.com/dynamo-base-model-hash`
(8 hex digits of sha256 of the model name: any model name becomes a valid label value) and the
annotation `nvidia.com/dynamo-base-model` with the name itself. One headless Service per base
model, `dynamo-model-<hash>`, selects those pods on their system port, so a model's ready
endpoints can be listed from its EndpointSlices (`dynamo-operator.md` §2.5).
"""

from __future__ import annotations

from dgd_operator.api import constants
from dgd_operator.api.k8s import Manifest
from dgd_operator.api.naming import model_hash, model_service_name
from dgd_operator.builders.components import SYSTEM_PORT
from dgd_operator.builders.context import GraphContext, ServiceContext
from dgd_operator.builders.labels import object_metadata


def base_model(ctx: ServiceContext) -> str | None:
    """The model name of the component's `modelRef`, or None."""
    ref = ctx.spec.model_ref
    return ref.name if ref is not None and ref.name else None


def model_pod_labels(ctx: ServiceContext) -> dict[str, str]:
    """`nvidia.com/dynamo-base-model-hash` for pods of a component with `modelRef`."""
    model = base_model(ctx)
    return {constants.LABEL_BASE_MODEL_HASH: model_hash(model)} if model else {}


def model_pod_annotations(ctx: ServiceContext) -> dict[str, str]:
    """`nvidia.com/dynamo-base-model: <name>` for pods of a component with `modelRef`."""
    model = base_model(ctx)
    return {constants.ANNOTATION_BASE_MODEL: model} if model else {}


def build_model_service(graph: GraphContext, model: str) -> Manifest:
    """The headless Service `dynamo-model-<hash>` of one base model (ready pods only)."""
    digest = model_hash(model)
    metadata = object_metadata(
        graph,
        model_service_name(model),
        {constants.LABEL_BASE_MODEL_HASH: digest, constants.LABEL_MANAGED_BY: constants.MANAGED_BY},
        {constants.ANNOTATION_BASE_MODEL: model},
    )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "clusterIP": "None",
            "selector": {constants.LABEL_BASE_MODEL_HASH: digest},
            "ports": [
                {
                    "name": "system",
                    "port": SYSTEM_PORT,
                    "targetPort": SYSTEM_PORT,
                    "protocol": "TCP",
                }
            ],
        },
    }


def build_model_services(graph: GraphContext) -> list[Manifest]:
    """One headless Service per distinct `modelRef.name` of the graph, sorted by model name."""
    models = {
        spec.model_ref.name
        for spec in graph.dgd.spec.services.values()
        if spec.model_ref is not None and spec.model_ref.name
    }
    return [build_model_service(graph, model) for model in sorted(models)]
