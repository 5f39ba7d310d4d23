"""Entry point of the builders: every object the operator owns for one DGD, in apply order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dgd_operator.api import constants
from dgd_operator.api.k8s import Manifest
from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.api.validation.errors import Problem
from dgd_operator.builders.adapters import build_scaling_adapter
from dgd_operator.builders.context import GraphContext, ServiceContext
from dgd_operator.builders.epp import build_epp_objects, epp_problems
from dgd_operator.builders.model_service import build_model_services
from dgd_operator.builders.multinode import build_multinode_service
from dgd_operator.builders.options import BuildOptions
from dgd_operator.builders.rbac import build_discovery_rbac
from dgd_operator.builders.services import build_ingress, build_virtual_service
from dgd_operator.builders.storage import build_pvcs
from dgd_operator.builders.workloads import (
    ServiceWorkloads,
    WorkloadBuilder,
    build_single_node_service,
)

# Dependencies first: identities and storage, then Services, workloads, then what points at them.
APPLY_ORDER: tuple[str, ...] = (
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "PersistentVolumeClaim",
    "Service",
    "PodGroup",  # before the StatefulSets whose pods join it
    "Deployment",
    "StatefulSet",
    "Ingress",
    "VirtualService",
    "DestinationRule",
    "InferencePool",
    "DynamoGraphDeploymentScalingAdapter",
)


def workload_builder(ctx: ServiceContext) -> WorkloadBuilder:
    """The workload builder responsible for a service: multinode groups or one Deployment."""
    return build_multinode_service if ctx.spec.is_multinode else build_single_node_service


def apply_rank(manifest: Manifest) -> int:
    """Position of a manifest's kind in `APPLY_ORDER` (unknown kinds last)."""
    kind = manifest.get("kind")
    return APPLY_ORDER.index(kind) if kind in APPLY_ORDER else len(APPLY_ORDER)


@dataclass(frozen=True)
class GraphPlan:
    """The objects of a DGD plus, per service, the workload kind and names status is read from."""

    objects: list[Manifest]
    services: dict[str, ServiceWorkloads] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)
    """What the graph asks for and the cluster cannot give (e.g. no InferencePool API): for
    `dgd validate` and the graph's status, never a reason to stop applying."""


def plan_graph(
    dgd: DynamoGraphDeployment,
    namespace: str,
    options: BuildOptions,
    *,
    restart_annotations: Mapping[str, str] | None = None,
    worker_hash: str | None = None,
) -> GraphPlan:
    """Build every child of `dgd` in `namespace`.

    `restart_annotations` maps service name to the restart id to stamp as the pod-template
    annotation `nvidia.com/restartAt` (the operator decides which services restart when).
    `worker_hash` names the worker generation of a managed rollout: worker-class services get
    generation workloads `<dgd>-<svc>-<hash>` (the operator decides when; see
    `dgd_operator.reconcile.rollout`).
    Raises `BuildError` (with a field path) for specs that cannot be built.
    """
    graph = GraphContext(dgd, namespace, options)
    restarts = restart_annotations or {}
    objects: list[Manifest] = [
        *build_discovery_rbac(graph),
        *build_pvcs(graph),
        *build_model_services(graph),
    ]
    services: dict[str, ServiceWorkloads] = {}
    seen: set[tuple[str, str]] = set()
    for name in sorted(dgd.spec.services):
        generation = worker_hash if graph.service(name).is_worker_class else None
        ctx: ServiceContext = graph.service(
            name, restart_id=restarts.get(name), worker_hash=generation
        )
        _ = ctx.backend_framework  # a framework mismatch fails the build, as in Dynamo
        workloads = workload_builder(ctx)(ctx)
        services[name] = workloads
        for obj in workloads.objects:
            # Shared objects (the launch-scripts ConfigMap) come from every multinode service.
            identity = (obj["kind"], obj["metadata"]["name"])
            if identity not in seen:
                seen.add(identity)
                objects.append(obj)
        for routed in (build_ingress(ctx), build_virtual_service(ctx)):
            if routed is not None:
                objects.append(routed)
        if ctx.component_type == constants.COMPONENT_EPP:
            objects.extend(build_epp_objects(ctx))
        adapter = build_scaling_adapter(ctx)
        if adapter is not None:
            objects.append(adapter)
    ordered = sorted(objects, key=apply_rank)  # stable: services stay alphabetical within a kind
    return GraphPlan(ordered, services, epp_problems(graph))


def build_graph(
    dgd: DynamoGraphDeployment,
    namespace: str,
    options: BuildOptions,
    *,
    restart_annotations: Mapping[str, str] | None = None,
    worker_hash: str | None = None,
) -> list[Manifest]:
    """Every object the operator owns for `dgd`, in apply order (see `plan_graph`)."""
    return plan_graph(
        dgd, namespace, options, restart_annotations=restart_annotations, worker_hash=worker_hash
    ).objects
