"""Per-DGD ServiceAccount, Role and RoleBinding for Kubernetes discovery (reference §4.1e)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dgd_operator.builders import labels as keys
from dgd_operator.builders.names import (
    discovery_role_binding_name,
    discovery_role_name,
    discovery_service_account_name,
)

if TYPE_CHECKING:
    from dgd_operator.builders.context import GraphContext

Manifest = dict[str, Any]
READ_VERBS = ["get", "list", "watch"]
ALL_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]

DISCOVERY_RULES: list[dict[str, list[str]]] = [
    {"apiGroups": [""], "resources": ["endpoints", "pods"], "verbs": READ_VERBS},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ_VERBS},
    {"apiGroups": ["nvidia.com"], "resources": ["dynamoworkermetadatas"], "verbs": ALL_VERBS},
]


def _rbac_labels(graph: GraphContext) -> dict[str, str]:
    return {
        keys.LABEL_APP_NAME: discovery_service_account_name(graph.name),
        keys.LABEL_APP_COMPONENT: "rbac",
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
            "metadata": keys.object_metadata(graph, sa_name, labels),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": keys.object_metadata(graph, role_name, labels),
            "rules": [{k: list(v) for k, v in rule.items()} for rule in DISCOVERY_RULES],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": keys.object_metadata(graph, discovery_role_binding_name(graph.name), labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
            "subjects": [{"kind": "ServiceAccount", "name": sa_name, "namespace": graph.namespace}],
        },
    ]
