"""Multinode services: leader/worker StatefulSet groups behind one headless Service.

Our own layout, core Kubernetes only (no LWS, no Grove). Service S of DGD D with
`multinode.nodeCount: N` and `replicas: R` becomes, per group g in 0..R-1:

* leader StatefulSet `<D>-<s>-<g>-ldr` (1 pod, node rank 0);
* worker StatefulSet `<D>-<s>-<g>-wkr` (N-1 pods, `ordinals.start: 1`, so the pod-index label
  is the node rank 1..N-1);
* one headless Service `<D>-<s>-nodes` (publishNotReadyAddresses) giving every pod a stable
  DNS name `<pod>.<D>-<s>-nodes` before it is ready;
* under Kubernetes discovery, the component Service `<D>-<s>` selects leaders only
  (`role: leader`, as Dynamo's multinode Services do).

Pods get `DGD_NODE_RANK`, `DGD_NODE_COUNT`, `DGD_GROUP_INDEX` and `DGD_LEADER_ADDRESS`; the
backend launch rules (`dgd_operator.builders.backends`) rewrite the main container per role.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dgd_operator.builders import labels as keys
from dgd_operator.builders.backends import (
    Backend,
    BackendError,
    DgdGroupAddressing,
    Role,
    apply_backend,
    gpus_per_pod,
    leader_address,
    leader_statefulset_name,
    nodes_service_name,
    worker_statefulset_name,
)
from dgd_operator.builders.container import Container
from dgd_operator.builders.env import env_var
from dgd_operator.builders.errors import BuildError
from dgd_operator.builders.podspec import PodSpec, build_pod_template
from dgd_operator.builders.services import build_component_service, needs_component_service
from dgd_operator.builders.workloads import ServiceWorkloads

if TYPE_CHECKING:
    from dgd_operator.builders.context import ServiceContext

Manifest = dict[str, Any]
LABEL_ROLE = "role"
LABEL_GROUP = "instance-id"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
ROLES: tuple[Role, ...] = ("leader", "worker")


def group_env(ctx: ServiceContext, group: int, role: Role) -> list[dict[str, Any]]:
    """Where a pod sits in its group: rank (0 for the leader), size, group index, leader DNS name."""
    if role == "leader":
        rank: dict[str, Any] = env_var("DGD_NODE_RANK", "0")
    else:
        rank = {
            "name": "DGD_NODE_RANK",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{POD_INDEX_LABEL}']"}},
        }
    return [
        env_var("DGD_GROUP_INDEX", str(group)),
        env_var("DGD_LEADER_ADDRESS", leader_address(ctx.graph.name, ctx.service, group)),
        env_var("DGD_NODE_COUNT", str(ctx.spec.node_count)),
        rank,
    ]


def build_nodes_service(ctx: ServiceContext) -> Manifest:
    """Headless Service `<D>-<s>-nodes` governing every group's StatefulSets."""
    selector = {keys.LABEL_GRAPH: ctx.graph.name, keys.LABEL_COMPONENT: ctx.service}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": keys.object_metadata(
            ctx.graph, nodes_service_name(ctx.graph.name, ctx.service), keys.component_labels(ctx)
        ),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector,
        },
    }


def build_group_statefulset(
    ctx: ServiceContext, group: int, role: Role
) -> tuple[Manifest, list[Manifest]]:
    """The leader or worker StatefulSet of one group, and objects its pods need (ConfigMaps)."""
    dgd_name = ctx.graph.name
    if role == "leader":
        name, replicas = leader_statefulset_name(dgd_name, ctx.service, group), 1
    else:
        name, replicas = worker_statefulset_name(dgd_name, ctx.service, group), ctx.spec.node_count - 1
    backend: Backend = ctx.backend_framework or "noop"
    extra_objects: list[Manifest] = []

    def launch(container: Container, pod_spec: PodSpec) -> tuple[Container, PodSpec]:
        try:
            result = apply_backend(
                container,
                pod_spec,
                backend=backend,
                role=role,
                node_count=ctx.spec.node_count,
                gpus_per_pod=gpus_per_pod(ctx.spec.resources, backend),
                annotations=keys.pod_annotations(ctx),
                dgd_name=dgd_name,
                addressing=DgdGroupAddressing(dgd_name, ctx.service, group),
                mpi_secret_name=ctx.graph.options.mpi_ssh_secret_name,
            )
        except BackendError as exc:
            raise BuildError(ctx.path, str(exc)) from exc
        extra_objects.extend(result.extra_objects)
        return result.container, result.pod_spec

    role_labels = {keys.LABEL_SELECTOR: name, LABEL_ROLE: role, LABEL_GROUP: str(group)}
    template = build_pod_template(
        ctx, extra_labels=role_labels, extra_env=group_env(ctx, group, role), pod_hook=launch
    )
    labels = {**keys.component_labels(ctx), LABEL_ROLE: role, LABEL_GROUP: str(group)}
    spec: dict[str, Any] = {
        "replicas": replicas,
        "serviceName": nodes_service_name(dgd_name, ctx.service),
        # Every node of a group must run at once: no ordered, one-by-one start.
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": {keys.LABEL_SELECTOR: name}},
        "updateStrategy": {"type": "RollingUpdate"},
        "template": template,
    }
    if role == "worker":
        spec["ordinals"] = {"start": 1}
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": keys.object_metadata(ctx.graph, name, labels, ctx.annotations),
        "spec": spec,
    }
    return statefulset, [_owned(ctx, obj) for obj in extra_objects]


def _owned(ctx: ServiceContext, obj: Manifest) -> Manifest:
    metadata = dict(obj.get("metadata") or {})
    full = keys.object_metadata(ctx.graph, str(metadata.get("name")), dict(metadata.get("labels") or {}))
    return {**obj, "metadata": {**metadata, **full}}


def build_multinode_service(ctx: ServiceContext) -> ServiceWorkloads:
    """Workload builder for multinode services: groups of leader/worker StatefulSets."""
    replicas = ctx.spec.replicas if ctx.spec.replicas is not None else 1
    objects: list[Manifest] = [build_nodes_service(ctx)]
    if needs_component_service(ctx):
        objects.append(build_component_service(ctx, extra_selector={LABEL_ROLE: "leader"}))
    names: list[str] = []
    for group in range(replicas):
        for role in ROLES:
            statefulset, extras = build_group_statefulset(ctx, group, role)
            objects.extend(extras)
            objects.append(statefulset)
            names.append(statefulset["metadata"]["name"])
    return ServiceWorkloads(ctx.service, "StatefulSet", tuple(names), tuple(objects))
