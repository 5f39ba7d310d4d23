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

import hashlib
from typing import Any

from dgd_operator.api import constants
from dgd_operator.api.engine_args import Backend, BackendError, gpus_per_pod
from dgd_operator.api.k8s import Manifest
from dgd_operator.api.naming import (
    GroupRole,
    group_labels,
    group_statefulset_name,
    leader_address,
    nodes_service_name,
)
from dgd_operator.builders.backends import DgdGroupAddressing, with_backend_launch
from dgd_operator.builders.container import Container
from dgd_operator.builders.context import ServiceContext
from dgd_operator.builders.env import env_var
from dgd_operator.builders.errors import BuildError
from dgd_operator.builders.gang import (
    GangGroup,
    apply_gang_fields,
    build_pod_group,
    gang_pod_fields,
    group_member_labels,
    pod_group_name,
)
from dgd_operator.builders.labels import component_labels, object_metadata, pod_annotations
from dgd_operator.builders.placement import group_pack_key, uses_default_scheduler
from dgd_operator.builders.podspec import PodSpec, build_pod_template
from dgd_operator.builders.services import build_component_service, needs_component_service
from dgd_operator.builders.workloads import ServiceWorkloads

POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
ROLES: tuple[GroupRole, ...] = ("leader", "worker")


def group_env(ctx: ServiceContext, group: int, role: GroupRole) -> list[dict[str, Any]]:
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
    selector = {constants.LABEL_GRAPH: ctx.graph.name, constants.LABEL_COMPONENT: ctx.service}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_metadata(
            ctx.graph, nodes_service_name(ctx.graph.name, ctx.service), component_labels(ctx)
        ),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector,
        },
    }


def build_group_statefulset(
    ctx: ServiceContext, group: int, role: GroupRole
) -> tuple[Manifest, list[Manifest]]:
    """The leader or worker StatefulSet of one group, and objects its pods need (ConfigMaps)."""
    dgd_name = ctx.graph.name
    name = group_statefulset_name(dgd_name, ctx.service, group, role)
    replicas = 1 if role == "leader" else ctx.spec.node_count - 1
    backend: Backend = ctx.backend_framework or "noop"
    extra_objects: list[Manifest] = []

    def launch(container: Container, pod_spec: PodSpec) -> tuple[Container, PodSpec]:
        try:
            result = with_backend_launch(
                container,
                pod_spec,
                backend=backend,
                role=role,
                node_count=ctx.spec.node_count,
                gpus_per_pod=gpus_per_pod(ctx.spec.resources, backend),
                annotations=pod_annotations(ctx),
                dgd_name=dgd_name,
                addressing=DgdGroupAddressing(dgd_name, ctx.service, group),
                mpi_secret_name=ctx.graph.options.mpi_ssh_secret_name,
            )
        except BackendError as exc:
            raise BuildError(ctx.path, str(exc)) from exc
        extra_objects.extend(result.extra_objects)
        return result.container, result.pod_spec

    role_labels = {constants.LABEL_SELECTOR: name, **group_labels(group, role)}
    template = build_pod_template(
        ctx, extra_labels=role_labels, extra_env=group_env(ctx, group, role), pod_hook=launch
    )
    labels = {**component_labels(ctx), **group_labels(group, role)}
    spec: dict[str, Any] = {
        "replicas": replicas,
        "serviceName": nodes_service_name(dgd_name, ctx.service),
        # Every node of a group must run at once: no ordered, one-by-one start.
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": {constants.LABEL_SELECTOR: name}},
        "updateStrategy": {"type": "RollingUpdate"},
        "template": template,
    }
    if role == "worker":
        spec["ordinals"] = {"start": 1}
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": object_metadata(ctx.graph, name, labels, ctx.annotations),
        "spec": spec,
    }
    return statefulset, [_owned(ctx, obj) for obj in extra_objects]


def _owned(ctx: ServiceContext, obj: Manifest) -> Manifest:
    metadata = dict(obj.get("metadata") or {})
    full = object_metadata(ctx.graph, str(metadata.get("name")), dict(metadata.get("labels") or {}))
    return {**obj, "metadata": {**metadata, **full}}


def with_gang_placement(
    ctx: ServiceContext, group: int, statefulsets: list[Manifest]
) -> list[Manifest]:
    """The group's PodGroup (when the cluster serves the API) followed by its StatefulSets.

    Both StatefulSets' pods join the PodGroup (`schedulingGroup`), so kube-scheduler binds none
    of them before it found room for all `nodeCount`; a service's own `packDomain` keeps each
    group's pods in one domain (also without PodGroups, or under another scheduler). The PodGroup's priority is the pods' own
    (the scheduler refuses a group whose pods and PodGroup disagree); the leader's template is
    the reference, and both templates come from the same service spec.
    """
    api = ctx.graph.options.pod_group_api
    leader_spec = statefulsets[0]["spec"]["template"]["spec"]
    if not uses_default_scheduler(leader_spec):
        # Another scheduler (KAI, Volcano) does its own gang placement; ours means nothing to it.
        api = None
    pack_key = group_pack_key(ctx.graph.dgd, ctx.service, ctx.graph.options.topology_domain_keys)
    if api is None and pack_key is None:
        return statefulsets
    priority = leader_spec.get("priorityClassName")
    name = pod_group_name(ctx.graph.name, ctx.service, group)
    if priority:
        # A PodGroup's priority is immutable: a new priority is a new PodGroup (the old one is
        # pruned), and the reconcile restarts the group so all its pods join the new one at once.
        name = f"{name}-{hashlib.sha256(str(priority).encode()).hexdigest()[:6]}"
    gang = GangGroup(
        name=name,
        node_count=ctx.spec.node_count,
        member_labels=group_member_labels(ctx.graph.name, ctx.service, group),
        priority_class_name=priority,
        pack_domain_key=pack_key,
    )
    fields = gang_pod_fields(gang, api)
    joined: list[Manifest] = []
    for statefulset in statefulsets:
        template = statefulset["spec"]["template"]
        spec = {**statefulset["spec"], "template": {**template}}
        spec["template"]["spec"] = apply_gang_fields(template["spec"], fields)
        joined.append({**statefulset, "spec": spec})
    if api is None:
        return joined  # packed into a domain, placed pod by pod
    pod_group = build_pod_group(gang, api)
    pod_group["metadata"] = object_metadata(
        ctx.graph,
        gang.name,
        {**component_labels(ctx), constants.LABEL_GROUP_INDEX: str(group)},
        ctx.annotations,
    )
    return [pod_group, *joined]


def build_multinode_service(ctx: ServiceContext) -> ServiceWorkloads:
    """Workload builder for multinode services: groups of leader/worker StatefulSets."""
    replicas = ctx.spec.replicas if ctx.spec.replicas is not None else 1
    objects: list[Manifest] = [build_nodes_service(ctx)]
    if needs_component_service(ctx):
        objects.append(
            build_component_service(
                ctx, extra_selector={constants.LABEL_ROLE: constants.ROLE_LEADER}
            )
        )
    names: list[str] = []
    for group in range(replicas):
        statefulsets: list[Manifest] = []
        for role in ROLES:
            statefulset, extras = build_group_statefulset(ctx, group, role)
            objects.extend(extras)
            statefulsets.append(statefulset)
        objects.extend(with_gang_placement(ctx, group, statefulsets))
        names.extend(statefulset["metadata"]["name"] for statefulset in statefulsets)
    return ServiceWorkloads(ctx.service, "StatefulSet", tuple(names), tuple(objects))
