"""Kubernetes Services and the frontend Ingress of a component (reference §2.5)."""

from __future__ import annotations

from typing import Any

from dgd_operator.api import constants
from dgd_operator.api.k8s import Manifest
from dgd_operator.api.models import IngressSpec, IngressTLS
from dgd_operator.api.tree import json_copy
from dgd_operator.builders.components import FRONTEND_PORT, component_defaults
from dgd_operator.builders.context import ServiceContext
from dgd_operator.builders.labels import component_labels, discovery_labels, object_metadata

DEFAULT_HOST_SUFFIX = "local"


def needs_component_service(ctx: ServiceContext) -> bool:
    """Frontends and the EPP (its InferencePool points at it) always get a Service; every
    component does under Kubernetes discovery."""
    always = (constants.COMPONENT_FRONTEND, constants.COMPONENT_EPP)
    return ctx.component_type in always or ctx.graph.kube_discovery


def component_service_selector(ctx: ServiceContext) -> dict[str, str]:
    """Pods of the component: type, Dynamo namespace, component (service key)."""
    selector: dict[str, str] = {}
    if ctx.component_type:
        selector[constants.LABEL_COMPONENT_TYPE] = ctx.component_type
    selector[constants.LABEL_DYNAMO_NAMESPACE] = ctx.dynamo_namespace
    selector[constants.LABEL_COMPONENT] = ctx.service
    return selector


def build_component_service(
    ctx: ServiceContext, *, extra_selector: dict[str, str] | None = None
) -> Manifest:
    """The ClusterIP Service `<dgd>-<lower(svc)>` ("." -> "-") with Dynamo's port for the type.

    `extra_selector` narrows the pods (multinode services select only their leaders).
    """
    labels = {**component_labels(ctx), **discovery_labels(ctx)}
    port = json_copy(component_defaults(ctx.component_type).service_port)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_metadata(ctx.graph, ctx.service_object_name, labels, ctx.annotations),
        "spec": {
            "type": "ClusterIP",
            "selector": {**component_service_selector(ctx), **(extra_selector or {})},
            "ports": [port],
        },
    }


def effective_ingress(ctx: ServiceContext) -> IngressSpec | None:
    """The frontend's `ingress`, else the operator's default (host = DGD name), else None.

    The default exists when the operator has ingress enabled (an Ingress of its class and TLS
    Secret) or an Istio gateway (a VirtualService on it), both under its host suffix.
    """
    if ctx.component_type != constants.COMPONENT_FRONTEND:
        return None
    if ctx.spec.ingress is not None:
        return ctx.spec.ingress
    options = ctx.graph.options
    if not options.ingress_enabled and not options.istio_gateway:
        return None
    tls = (
        IngressTLS(secret_name=options.ingress_tls_secret_name)
        if options.ingress_enabled and options.ingress_tls_secret_name
        else None
    )
    return IngressSpec(
        enabled=True,
        host=ctx.graph.name,
        host_suffix=options.ingress_host_suffix,
        ingress_controller_class_name=(
            options.ingress_controller_class_name if options.ingress_enabled else None
        ),
        tls=tls,
        use_virtual_service=bool(options.istio_gateway),
        virtual_service_gateway=options.istio_gateway,
    )


def ingress_host(ingress: IngressSpec) -> str:
    """`<hostPrefix><host>.<hostSuffix or "local">`."""
    return f"{ingress.host_prefix or ''}{ingress.host or ''}.{ingress.host_suffix or DEFAULT_HOST_SUFFIX}"


def build_ingress(ctx: ServiceContext) -> Manifest | None:
    """The frontend Ingress when enabled with a controller class (see `build_virtual_service`)."""
    ingress = effective_ingress(ctx)
    if ingress is None or not ingress.enabled or not ingress.ingress_controller_class_name:
        return None
    host = ingress_host(ingress)
    backend = {"service": {"name": ctx.service_object_name, "port": {"number": FRONTEND_PORT}}}
    spec: dict[str, Any] = {
        "ingressClassName": ingress.ingress_controller_class_name,
        "rules": [
            {
                "host": host,
                "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
            }
        ],
    }
    if ingress.tls is not None and ingress.tls.secret_name:
        spec["tls"] = [{"hosts": [host], "secretName": ingress.tls.secret_name}]
    labels = {**component_labels(ctx), **ingress.labels}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": object_metadata(
            ctx.graph, ctx.service_object_name, labels, ingress.annotations
        ),
        "spec": spec,
    }


def build_virtual_service(ctx: ServiceContext) -> Manifest | None:
    """The frontend's Istio VirtualService when its ingress is enabled with `useVirtualService`
    and a gateway: host `<prefix><host>.<suffix>`, every path to the frontend Service."""
    ingress = effective_ingress(ctx)
    if (
        ingress is None
        or not ingress.enabled
        or not ingress.use_virtual_service
        or not ingress.virtual_service_gateway
    ):
        return None
    destination = {"host": ctx.service_object_name, "port": {"number": FRONTEND_PORT}}
    labels = {**component_labels(ctx), **ingress.labels}
    return {
        "apiVersion": constants.ISTIO_NETWORKING_GROUP_VERSION,
        "kind": constants.VIRTUAL_SERVICE_KIND,
        "metadata": object_metadata(
            ctx.graph, ctx.service_object_name, labels, ingress.annotations
        ),
        "spec": {
            "hosts": [ingress_host(ingress)],
            "gateways": [ingress.virtual_service_gateway],
            "http": [
                {"match": [{"uri": {"prefix": "/"}}], "route": [{"destination": destination}]}
            ],
        },
    }
