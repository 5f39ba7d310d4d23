"""The kinds the operator reads, writes and watches, resolved once from `api.constants`."""

from __future__ import annotations

from dgd_operator.api.constants import (
    DGD_KIND,
    DGD_PLURAL,
    DGDSA_KIND,
    DGDSA_PLURAL,
    GROUP_VERSION,
)
from dgd_operator.controllerkit.kubeapi import Kinds, ResourceKind

DGD = ResourceKind(GROUP_VERSION, DGD_KIND, DGD_PLURAL)
DGDSA = ResourceKind(GROUP_VERSION, DGDSA_KIND, DGDSA_PLURAL)

KINDS = Kinds((DGD, DGDSA))
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
