"""Per-DGD ServiceAccount, Role and RoleBinding for Kubernetes discovery (reference §4.1e)."""

from __future__ import annotations

from dgd_operator.api import constants
from dgd_operator.api.k8s import Manifest
from dgd_operator.api.naming import (
    discovery_role_binding_name,
    discovery_role_name,
    discovery_service_account_name,
)
from dgd_operator.builders.context import GraphContext
from dgd_operator.builders.labels import object_metadata

READ_VERBS = ["get", "list", "watch"]
ALL_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]

DISCOVERY_RULES: list[dict[str, list[str]]] = [
    {"apiGroups": [""], "resources": ["endpoints", "pods"], "verbs": READ_VERBS},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ_VERBS},
    {
        "apiGroups": [constants.API_GROUP],
        "resources": ["dynamoworkermetadatas"],
        "verbs": ALL_VERBS,
    },
]


def _rbac_labels(graph: GraphContext) -> dict[str, str]:
    return {
        constants.LABEL_APP_NAME: discovery_service_account_name(graph.name),
        constants.LABEL_APP_COMPONENT: "rbac",
    }


def build_discovery_rbac(graph: GraphContext) -> list[Manifest]:
    """ServiceAccount, Role and RoleBinding the pods use to discover each other (k8s discovery only)."""
    if not graph.kube_discovery:
        return []
    sa_name = discovery_service_account_name(graph.name)
    role_name = discovery_role_name(graph.name)
    labels = _rbac_labels(graph)
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": object_metadata(graph, sa_name, labels),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": object_metadata(graph, role_name, labels),
            "rules": [{k: list(v) for k, v in rule.items()} for rule in DISCOVERY_RULES],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": object_metadata(graph, discovery_role_binding_name(graph.name), labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
            "subjects": [{"kind": "ServiceAccount", "name": sa_name, "namespace": graph.namespace}],
        },
    ]
