"""Object names, exactly as Dynamo derives them (reference §2.2)."""

from __future__ import annotations

GLOBAL_DYNAMO_NAMESPACE = "dynamo"
DISCOVERY_SUFFIX = "k8s-service-discovery"


def component_name(dgd_name: str, service: str) -> str:
    """`<dgd>-<lower(service)>`: the Deployment, `nvidia.com/selector` value and DGDSA name."""
    return f"{dgd_name}-{service.lower()}"


def service_object_name(dgd_name: str, service: str) -> str:
    """Name of the component's Kubernetes Service (and Ingress): the component name, "." -> "-"."""
    return component_name(dgd_name, service).replace(".", "-")


def dynamo_namespace(k8s_namespace: str, dgd_name: str, *, global_namespace: bool = False) -> str:
    """The Dynamo runtime namespace: `<k8s ns>-<dgd with "." -> "-">`, or `dynamo` when global."""
    if global_namespace:
        return GLOBAL_DYNAMO_NAMESPACE
    return f"{k8s_namespace}-{dgd_name.replace('.', '-')}"


def discovery_service_account_name(dgd_name: str) -> str:
    """`<dgd>-k8s-service-discovery`: the pods' ServiceAccount under Kubernetes discovery."""
    return f"{dgd_name}-{DISCOVERY_SUFFIX}"


def discovery_role_name(dgd_name: str) -> str:
    """`<dgd>-k8s-service-discovery-role`."""
    return f"{discovery_service_account_name(dgd_name)}-role"


def discovery_role_binding_name(dgd_name: str) -> str:
    """`<dgd>-k8s-service-discovery-binding`."""
    return f"{discovery_service_account_name(dgd_name)}-binding"
