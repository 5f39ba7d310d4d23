"""The kinds the operator reads, writes and watches, resolved once from `api.constants`."""

from __future__ import annotations

from dgd_operator.api.constants import (
    DESTINATION_RULE_KIND,
    DESTINATION_RULE_PLURAL,
    DGD_KIND,
    DGD_PLURAL,
    DGDSA_KIND,
    DGDSA_PLURAL,
    GROUP_VERSION,
    GROUP_VERSION_V1BETA1,
    INFERENCE_POOL_GROUP_VERSION,
    INFERENCE_POOL_KIND,
    INFERENCE_POOL_PLURAL,
    ISTIO_NETWORKING_GROUP_VERSION,
    POD_GROUP_KIND,
    POD_GROUP_PLURAL,
    POD_GROUP_VERSIONS,
    SCHEDULING_API_GROUP,
    VIRTUAL_SERVICE_KIND,
    VIRTUAL_SERVICE_PLURAL,
)
from dgd_operator.controllerkit.kubeapi import Kinds, ResourceKind

# Our own kinds are read, watched and written at their storage version, v1beta1 (the hub): the
# API server never has to call a conversion webhook (ours or Dynamo's) for the operator to
# list, watch or write them, so reconciling goes on while no webhook is reachable.
DGD = ResourceKind(GROUP_VERSION_V1BETA1, DGD_KIND, DGD_PLURAL)
DGDSA = ResourceKind(GROUP_VERSION_V1BETA1, DGDSA_KIND, DGDSA_PLURAL)

# PodGroups (scheduling.k8s.io) are not watched: the API may not be served (it is detected by
# discovery, `steps/placement.py`), so they are read with a GET like Secrets, and listed only
# when a graph's set of groups changed.
POD_GROUP_KINDS = tuple(
    ResourceKind(f"{SCHEDULING_API_GROUP}/{version}", POD_GROUP_KIND, POD_GROUP_PLURAL)
    for version in POD_GROUP_VERSIONS
)

# Nodes are listed (by label selector, cached) only to tell whether a topology domain's label
# exists on any node (`TopologyLevelsAvailable`); never watched.
NODE = ResourceKind("v1", "Node", "nodes", namespaced=False)

# The deprecated version stays resolvable for readers that want it (`dgd render` emits adapters
# at v1alpha1; the demo reads them back that way); the operator never watches or writes it.
SPOKE_KINDS = (
    ResourceKind(GROUP_VERSION, DGD_KIND, DGD_PLURAL),
    ResourceKind(GROUP_VERSION, DGDSA_KIND, DGDSA_PLURAL),
)

# Optional APIs the builders may emit (Gateway API Inference Extension, Istio): not watched,
# since they may not be served; read with a GET before they are compared, like Secrets.
INFERENCE_POOL = ResourceKind(
    INFERENCE_POOL_GROUP_VERSION, INFERENCE_POOL_KIND, INFERENCE_POOL_PLURAL
)
ISTIO_KINDS = (
    ResourceKind(ISTIO_NETWORKING_GROUP_VERSION, DESTINATION_RULE_KIND, DESTINATION_RULE_PLURAL),
    ResourceKind(ISTIO_NETWORKING_GROUP_VERSION, VIRTUAL_SERVICE_KIND, VIRTUAL_SERVICE_PLURAL),
)

KINDS = Kinds((DGD, DGDSA, *SPOKE_KINDS, *POD_GROUP_KINDS, NODE, INFERENCE_POOL, *ISTIO_KINDS))
"""Built-in kinds plus our CRDs; the registry the operator's client resolves paths with."""

resource_kind = KINDS.of

# Every kind the builders may emit that the operator watches (children found by our labels).
# Kinds outside this list (Secrets: too sensitive and too many to watch) are read with a GET
# before they are compared.
WATCHED_CHILD_KINDS: tuple[ResourceKind, ...] = (
    *(
        KINDS.of(api_version, kind)
        for api_version, kind in (
            ("apps/v1", "Deployment"),
            ("apps/v1", "StatefulSet"),
            ("v1", "Service"),
            ("v1", "ConfigMap"),
            ("v1", "ServiceAccount"),
            ("v1", "PersistentVolumeClaim"),
            ("rbac.authorization.k8s.io/v1", "Role"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("networking.k8s.io/v1", "Ingress"),
        )
    ),
    DGDSA,
)
WATCHED = frozenset((rk.api_version, rk.kind) for rk in WATCHED_CHILD_KINDS)

# Namespace-wide objects shared by the graphs of a namespace (planner/EPP accounts): watched
# so a deleted one is noticed and re-created.
SHARED_KINDS: tuple[ResourceKind, ...] = (
    KINDS.of("v1", "ServiceAccount"),
    KINDS.of("rbac.authorization.k8s.io/v1", "RoleBinding"),
)
