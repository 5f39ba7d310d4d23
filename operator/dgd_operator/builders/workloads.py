"""Workload builders: one per service, returning the objects that run its pods.

A workload builder takes a `ServiceContext` and returns `ServiceWorkloads`: the workload
objects plus the component's Kubernetes Service (whose selector depends on the workload
shape). Single-node services become a Deployment (Dynamo's DCD pathway, flattened);
multinode services become leader/worker StatefulSet groups in `dgd_operator.builders.multinode`,
whose component Service selects leaders only. The graph picks the builder
(`dgd_operator.builders.graph.workload_builder`) and adds the Ingress and the scaling adapter,
which do not depend on the workload shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dgd_operator.api import constants
from dgd_operator.api.k8s import Manifest
from dgd_operator.builders.context import ServiceContext
from dgd_operator.builders.errors import BuildError
from dgd_operator.builders.labels import component_labels, object_metadata
from dgd_operator.builders.podspec import build_pod_template
from dgd_operator.builders.services import build_component_service, needs_component_service

DEFAULT_ROLLING_STEP = "25%"
_INT_OR_PERCENT = re.compile(r"^(\d+)(%?)$")


@dataclass(frozen=True)
class ServiceWorkloads:
    """What a workload builder made for one service.

    `kind` and `names` are what the operator reads status from (`status.services[svc]
    .componentKind` / `.componentNames`); `objects` are the manifests to apply.
    """

    service: str
    kind: str
    names: tuple[str, ...]
    objects: tuple[Manifest, ...] = field(default_factory=tuple)


WorkloadBuilder = Callable[["ServiceContext"], ServiceWorkloads]


def _int_or_percent(ctx: ServiceContext, annotation: str) -> int | str:
    raw = ctx.annotations.get(annotation, DEFAULT_ROLLING_STEP).strip()
    match = _INT_OR_PERCENT.match(raw)
    if match is None:
        raise BuildError(
            f"{ctx.path}.annotations.{annotation}",
            f"must be a non-negative integer or a percentage like 25%, got {raw!r}",
        )
    return raw if match.group(2) else int(match.group(1))


def deployment_strategy(ctx: ServiceContext) -> dict[str, Any]:
    """RollingUpdate 25%/25% unless `nvidia.com/deployment-strategy` / `...-max-*` say otherwise."""
    strategy = ctx.annotations.get(
        constants.ANNOTATION_DEPLOYMENT_STRATEGY, "RollingUpdate"
    ).strip()
    if strategy.lower() == "recreate":
        return {"type": "Recreate"}
    if strategy.lower() != "rollingupdate":
        raise BuildError(
            f"{ctx.path}.annotations.{constants.ANNOTATION_DEPLOYMENT_STRATEGY}",
            f"must be RollingUpdate or Recreate, got {strategy!r}",
        )
    return {
        "type": "RollingUpdate",
        "rollingUpdate": {
            "maxSurge": _int_or_percent(ctx, constants.ANNOTATION_MAX_SURGE),
            "maxUnavailable": _int_or_percent(ctx, constants.ANNOTATION_MAX_UNAVAILABLE),
        },
    }


def build_deployment(ctx: ServiceContext) -> Manifest:
    """The Deployment of a single-node service (`<dgd>-<lower(svc)>[-<worker hash>]`).

    `replicas` is always written: the service's value, or 1 when unset (Kubernetes' default,
    made explicit so the rendered object says what runs).
    """
    replicas = ctx.spec.replicas if ctx.spec.replicas is not None else 1
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_metadata(
            ctx.graph, ctx.workload_name, component_labels(ctx), ctx.annotations
        ),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {constants.LABEL_SELECTOR: ctx.workload_name}},
            "strategy": deployment_strategy(ctx),
            "template": build_pod_template(ctx),
        },
    }


def build_single_node_service(ctx: ServiceContext) -> ServiceWorkloads:
    """Workload builder for single-node services: the component Service (if any) and a Deployment."""
    objects: list[Manifest] = []
    if needs_component_service(ctx):
        objects.append(build_component_service(ctx))
    objects.append(build_deployment(ctx))
    return ServiceWorkloads(ctx.service, "Deployment", (ctx.workload_name,), tuple(objects))
