"""The labels, annotations and owner references of every child (keys from `api.constants`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dgd_operator.api import constants
from dgd_operator.api.models import DynamoGraphDeployment, ServiceSpec

# Type-only: `context` builds on these helpers (`service_annotations`), so a runtime import
# would be a cycle.
if TYPE_CHECKING:
    from dgd_operator.builders.context import GraphContext, ServiceContext


def service_annotations(dgd: DynamoGraphDeployment, spec: ServiceSpec) -> dict[str, str]:
    """Effective annotations of a service: `spec.annotations` < DGD behaviour annotations < service."""
    merged = dict(dgd.spec.annotations)
    for key in constants.INHERITED_DGD_ANNOTATIONS:
        if key in dgd.metadata.annotations:
            merged[key] = dgd.metadata.annotations[key]
    merged.update(spec.annotations)
    return merged


def graph_labels(graph: GraphContext) -> dict[str, str]:
    """Labels every child carries: the graph name (Dynamo's) and managed-by (ours)."""
    return {constants.LABEL_GRAPH: graph.name, constants.LABEL_MANAGED_BY: constants.MANAGED_BY}


def identity_labels(ctx: ServiceContext) -> dict[str, str]:
    """Labels naming the component; re-applied last so users cannot break selectors."""
    labels = {
        constants.LABEL_GRAPH: ctx.graph.name,
        constants.LABEL_COMPONENT: ctx.service,
        constants.LABEL_DYNAMO_NAMESPACE: ctx.dynamo_namespace,
    }
    if ctx.component_type:
        labels[constants.LABEL_COMPONENT_TYPE] = ctx.component_type
    if ctx.is_worker_class and ctx.graph.has_epp:
        # The graph's InferencePool selects its workers by this label (dynamo-v1beta1.md §8.2).
        labels[constants.LABEL_COMPONENT_CLASS] = constants.COMPONENT_CLASS_WORKER
    return labels


def discovery_labels(ctx: ServiceContext) -> dict[str, str]:
    """`nvidia.com/dynamo-discovery-*` labels, present under Kubernetes discovery only."""
    if not ctx.graph.kube_discovery:
        return {}
    return {
        constants.LABEL_DISCOVERY_BACKEND: "kubernetes",
        constants.LABEL_DISCOVERY_ENABLED: "true",
    }


def component_labels(ctx: ServiceContext) -> dict[str, str]:
    """Labels of the component's own objects (workload, Service): user labels, then identity."""
    labels = dict(ctx.user_labels)
    if ctx.spec.sub_component_type:
        labels[constants.LABEL_SUB_COMPONENT_TYPE] = ctx.spec.sub_component_type
    labels.update(identity_labels(ctx))
    labels[constants.LABEL_MANAGED_BY] = constants.MANAGED_BY
    if ctx.worker_hash:
        labels[constants.LABEL_WORKER_HASH] = ctx.worker_hash
    return labels


def pod_labels(ctx: ServiceContext, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Pod template labels: operator labels, user and extraPodMetadata labels, protected re-applied."""
    labels: dict[str, str] = {}
    if ctx.spec.sub_component_type:
        labels[constants.LABEL_SUB_COMPONENT_TYPE] = ctx.spec.sub_component_type
    if ctx.metrics_enabled:
        labels[constants.LABEL_METRICS_ENABLED] = "true"
    labels.update(discovery_labels(ctx))
    labels.update(ctx.user_labels)
    if ctx.spec.extra_pod_metadata is not None:
        labels.update(ctx.spec.extra_pod_metadata.labels)
    labels.update(identity_labels(ctx))
    labels[constants.LABEL_SELECTOR] = ctx.workload_name
    if ctx.worker_hash:
        labels[constants.LABEL_WORKER_HASH] = ctx.worker_hash
    labels.update(extra or {})
    return labels


def pod_annotations(ctx: ServiceContext) -> dict[str, str]:
    """Pod template annotations: service annotations, extraPodMetadata, `nvidia.com/restartAt`."""
    annotations = dict(ctx.annotations)
    if ctx.spec.extra_pod_metadata is not None:
        annotations.update(ctx.spec.extra_pod_metadata.annotations)
    if ctx.restart_id is not None:
        annotations[constants.ANNOTATION_RESTART_AT] = ctx.restart_id
    if ctx.component_type == constants.COMPONENT_EPP:
        # The EPP terminates its own gRPC TLS; only the component itself may ask for a proxy
        # (a graph-wide `spec.annotations` value does not count).
        own = {**ctx.spec.annotations}
        if ctx.spec.extra_pod_metadata is not None:
            own.update(ctx.spec.extra_pod_metadata.annotations)
        if constants.ANNOTATION_ISTIO_INJECT not in own:
            annotations[constants.ANNOTATION_ISTIO_INJECT] = "false"
    return annotations


def owner_references(dgd: DynamoGraphDeployment) -> list[dict[str, Any]]:
    """A controller owner reference to the DGD, or none while its uid is unknown (render)."""
    if not dgd.metadata.uid:
        return []
    return [
        {
            "apiVersion": constants.GROUP_VERSION,
            "kind": constants.DGD_KIND,
            "name": dgd.metadata.name,
            "uid": dgd.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def object_metadata(
    graph: GraphContext,
    name: str,
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """metadata of a child: name, namespace, labels (+ graph labels), annotations, ownerReferences."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": graph.namespace,
        "labels": {**labels, **graph_labels(graph)},
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    owners = owner_references(graph.dgd)
    if owners:
        metadata["ownerReferences"] = owners
    return metadata
