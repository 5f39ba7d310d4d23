"""Kubernetes Services and the frontend Ingress of a component (reference §2.5)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from dgd_operator.api.models import IngressSpec, IngressTLS
from dgd_operator.builders import labels as keys
from dgd_operator.builders.components import FRONTEND_PORT, component_defaults
from dgd_operator.builders.context import FRONTEND

if TYPE_CHECKING:
    from dgd_operator.builders.context import ServiceContext

Manifest = dict[str, Any]
DEFAULT_HOST_SUFFIX = "local"


def needs_component_service(ctx: ServiceContext) -> bool:
    """Frontends always get a Service; every component does under Kubernetes discovery."""
    return ctx.component_type == FRONTEND or ctx.graph.kube_discovery


def component_service_selector(ctx: ServiceContext) -> dict[str, str]:
    """Pods of the component: type, Dynamo namespace, component (service key)."""
    selector: dict[str, str] = {}
    if ctx.component_type:
        selector[keys.LABEL_COMPONENT_TYPE] = ctx.component_type
    selector[keys.LABEL_DYNAMO_NAMESPACE] = ctx.dynamo_namespace
    selector[keys.LABEL_COMPONENT] = ctx.service
    return selector


def build_component_service(
    ctx: ServiceContext, *, extra_selector: dict[str, str] | None = None
) -> Manifest:
    """The ClusterIP Service `<dgd>-<lower(svc)>` ("." -> "-") with Dynamo's port for the type.

    `extra_selector` narrows the pods (multinode services select only their leaders).
    """
    labels = {**keys.component_labels(ctx), **keys.discovery_labels(ctx)}
    port = copy.deepcopy(component_defaults(ctx.component_type).service_port)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": keys.object_metadata(ctx.graph, ctx.service_object_name, labels, ctx.annotations),
        "spec": {
            "type": "ClusterIP",
            "selector": {**component_service_selector(ctx), **(extra_selector or {})},
            "ports": [port],
        },
    }


def effective_ingress(ctx: ServiceContext) -> IngressSpec | None:
    """The frontend's `ingress`, else the operator's default ingress (host = DGD name), else None."""
    if ctx.component_type != FRONTEND:
        return None
    if ctx.spec.ingress is not None:
        return ctx.spec.ingress
    options = ctx.graph.options
    if not options.ingress_enabled:
        return None
    tls = IngressTLS(secret_name=options.ingress_tls_secret_name) if options.ingress_tls_secret_name else None
    return IngressSpec(
        enabled=True,
        host=ctx.graph.name,
        host_suffix=options.ingress_host_suffix,
        ingress_controller_class_name=options.ingress_controller_class_name,
        tls=tls,
    )


def ingress_host(ingress: IngressSpec) -> str:
    """`<hostPrefix><host>.<hostSuffix or "local">`."""
    return f"{ingress.host_prefix or ''}{ingress.host or ''}.{ingress.host_suffix or DEFAULT_HOST_SUFFIX}"


def build_ingress(ctx: ServiceContext) -> Manifest | None:
    """The frontend Ingress when enabled with a controller class; Istio VirtualServices are not built."""
    ingress = effective_ingress(ctx)
    if ingress is None or not ingress.enabled or not ingress.ingress_controller_class_name:
        return None
    host = ingress_host(ingress)
    backend = {"service": {"name": ctx.service_object_name, "port": {"number": FRONTEND_PORT}}}
    spec: dict[str, Any] = {
        "ingressClassName": ingress.ingress_controller_class_name,
        "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}],
    }
    if ingress.tls is not None and ingress.tls.secret_name:
        spec["tls"] = [{"hosts": [host], "secretName": ingress.tls.secret_name}]
    labels = {**keys.component_labels(ctx), **ingress.labels}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": keys.object_metadata(ctx.graph, ctx.service_object_name, labels, ingress.annotations),
        "spec": spec,
    }
