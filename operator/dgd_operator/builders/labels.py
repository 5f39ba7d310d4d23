"""Label and annotation keys (Dynamo's, reference §2.3) and the metadata of every child."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dgd_operator.api.models import DGD_KIND, GROUP_VERSION, DynamoGraphDeployment, ServiceSpec

if TYPE_CHECKING:
    from dgd_operator.builders.context import GraphContext, ServiceContext

LABEL_GRAPH = "nvidia.com/dynamo-graph-deployment-name"
LABEL_COMPONENT = "nvidia.com/dynamo-component"
LABEL_DYNAMO_NAMESPACE = "nvidia.com/dynamo-namespace"
LABEL_COMPONENT_TYPE = "nvidia.com/dynamo-component-type"
LABEL_SUB_COMPONENT_TYPE = "nvidia.com/dynamo-sub-component-type"
LABEL_SELECTOR = "nvidia.com/selector"
LABEL_METRICS_ENABLED = "nvidia.com/metrics-enabled"
LABEL_DISCOVERY_BACKEND = "nvidia.com/dynamo-discovery-backend"
LABEL_DISCOVERY_ENABLED = "nvidia.com/dynamo-discovery-enabled"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_APP_COMPONENT = "app.kubernetes.io/component"
LABEL_APP_NAME = "app.kubernetes.io/name"
MANAGED_BY = "dgd-operator"

ANNOTATION_ENABLE_METRICS = "nvidia.com/enable-metrics"
ANNOTATION_DISCOVERY_BACKEND = "nvidia.com/dynamo-discovery-backend"
ANNOTATION_KUBE_DISCOVERY_MODE = "nvidia.com/dynamo-kube-discovery-mode"
ANNOTATION_ORIGIN_VERSION = "nvidia.com/dynamo-operator-origin-version"
ANNOTATION_VLLM_EXECUTOR = "nvidia.com/vllm-distributed-executor-backend"
ANNOTATION_DISABLE_PULL_SECRET_DISCOVERY = "nvidia.com/disable-image-pull-secret-discovery"
ANNOTATION_DEPLOYMENT_STRATEGY = "nvidia.com/deployment-strategy"
ANNOTATION_MAX_SURGE = "nvidia.com/deployment-rolling-update-max-surge"
ANNOTATION_MAX_UNAVAILABLE = "nvidia.com/deployment-rolling-update-max-unavailable"
ANNOTATION_RESTART_AT = "nvidia.com/restartAt"

# DGD metadata annotations copied into every service's annotations (service value wins).
INHERITED_DGD_ANNOTATIONS = (
    ANNOTATION_ENABLE_METRICS,
    ANNOTATION_DISCOVERY_BACKEND,
    ANNOTATION_KUBE_DISCOVERY_MODE,
    ANNOTATION_ORIGIN_VERSION,
    ANNOTATION_VLLM_EXECUTOR,
)


def service_annotations(dgd: DynamoGraphDeployment, spec: ServiceSpec) -> dict[str, str]:
    """Effective annotations of a service: `spec.annotations` < DGD behaviour annotations < service."""
    merged = dict(dgd.spec.annotations)
    for key in INHERITED_DGD_ANNOTATIONS:
        if key in dgd.metadata.annotations:
            merged[key] = dgd.metadata.annotations[key]
    merged.update(spec.annotations)
    return merged


def graph_labels(graph: GraphContext) -> dict[str, str]:
    """Labels every child carries: the graph name (Dynamo's) and managed-by (ours)."""
    return {LABEL_GRAPH: graph.name, LABEL_MANAGED_BY: MANAGED_BY}


def identity_labels(ctx: ServiceContext) -> dict[str, str]:
    """Labels naming the component; re-applied last so users cannot break selectors."""
    labels = {
        LABEL_GRAPH: ctx.graph.name,
        LABEL_COMPONENT: ctx.service,
        LABEL_DYNAMO_NAMESPACE: ctx.dynamo_namespace,
    }
    if ctx.component_type:
        labels[LABEL_COMPONENT_TYPE] = ctx.component_type
    return labels


def discovery_labels(ctx: ServiceContext) -> dict[str, str]:
    """`nvidia.com/dynamo-discovery-*` labels, present under Kubernetes discovery only."""
    if not ctx.graph.kube_discovery:
        return {}
    return {LABEL_DISCOVERY_BACKEND: "kubernetes", LABEL_DISCOVERY_ENABLED: "true"}


def component_labels(ctx: ServiceContext) -> dict[str, str]:
    """Labels of the component's own objects (workload, Service): user labels, then identity."""
    labels = dict(ctx.user_labels)
    if ctx.spec.sub_component_type:
        labels[LABEL_SUB_COMPONENT_TYPE] = ctx.spec.sub_component_type
    labels.update(identity_labels(ctx))
    labels[LABEL_MANAGED_BY] = MANAGED_BY
    return labels


def pod_labels(ctx: ServiceContext, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Pod template labels: operator labels, user and extraPodMetadata labels, protected re-applied."""
    labels: dict[str, str] = {}
    if ctx.spec.sub_component_type:
        labels[LABEL_SUB_COMPONENT_TYPE] = ctx.spec.sub_component_type
    if ctx.metrics_enabled:
        labels[LABEL_METRICS_ENABLED] = "true"
    labels.update(discovery_labels(ctx))
    labels.update(ctx.user_labels)
    if ctx.spec.extra_pod_metadata is not None:
        labels.update(ctx.spec.extra_pod_metadata.labels)
    labels.update(identity_labels(ctx))
    labels[LABEL_SELECTOR] = ctx.name
    labels.update(extra or {})
    return labels


def pod_annotations(ctx: ServiceContext) -> dict[str, str]:
    """Pod template annotations: service annotations, extraPodMetadata, `nvidia.com/restartAt`."""
    annotations = dict(ctx.annotations)
    if ctx.spec.extra_pod_metadata is not None:
        annotations.update(ctx.spec.extra_pod_metadata.annotations)
    if ctx.restart_id is not None:
        annotations[ANNOTATION_RESTART_AT] = ctx.restart_id
    return annotations


def owner_references(dgd: DynamoGraphDeployment) -> list[dict[str, Any]]:
    """A controller owner reference to the DGD, or none while its uid is unknown (render)."""
    if not dgd.metadata.uid:
        return []
    return [
        {
            "apiVersion": GROUP_VERSION,
            "kind": DGD_KIND,
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
