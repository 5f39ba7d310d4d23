"""Object names, exactly as Dynamo derives them (reference §2.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dgd_operator.api.models import DynamoGraphDeployment

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


MAX_LABEL_VALUE = 63


def label_value_problems(k8s_namespace: str, dgd: DynamoGraphDeployment) -> list[tuple[str, str]]:
    """(field path, message) for names that would make a child's label value longer than 63.

    The API server refuses such children with a 422 only when they are applied; the DGD name
    is copied into `nvidia.com/dynamo-graph-deployment-name`, and `<namespace>-<name>` into
    `nvidia.com/dynamo-namespace` of every service without `globalDynamoNamespace`.
    """
    name = dgd.metadata.name
    if len(name) > MAX_LABEL_VALUE:
        return [("metadata.name", f"{len(name)} characters: it becomes the label value "
                 f"nvidia.com/dynamo-graph-deployment-name, which is limited to {MAX_LABEL_VALUE}")]
    if all(spec.global_dynamo_namespace for spec in dgd.spec.services.values()):
        return []
    value = dynamo_namespace(k8s_namespace, name)
    if len(value) <= MAX_LABEL_VALUE:
        return []
    allowed = MAX_LABEL_VALUE - len(k8s_namespace) - 1
    return [(
        "metadata.name",
        f"the Dynamo namespace {value!r} (<namespace>-<name>) is {len(value)} characters, but it is "
        f"the label value nvidia.com/dynamo-namespace, limited to {MAX_LABEL_VALUE}: in namespace "
        f"{k8s_namespace!r} the name may have at most {max(allowed, 0)} characters",
    )]
