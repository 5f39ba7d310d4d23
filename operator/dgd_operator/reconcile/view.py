"""The watched state a reconcile reads: `ClusterView`, and its implementation over our indexes.

Every read of a reconcile comes from here (no GETs for watched kinds). `handlers.py` fills the
indexes from the informers' watch streams; tests implement `ClusterView` with dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from dgd_operator.api.constants import DGD_KIND, LABEL_GROUP_INDEX
from dgd_operator.controllerkit.indexes import Index
from dgd_operator.reconcile.state import Key

SharedKey = tuple[str, str]
"""(kind, name) of a namespace-wide object within its namespace."""

UNREAD_CHILD_FIELDS = {"ConfigMap": ("data", "binaryData")}
"""Top-level fields of a live child no reconcile reads, by kind (besides pod templates' specs)."""


def cached_child(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """What the watch cache keeps of a child: all of it but what no reconcile reads.

    A live child is compared with its desired manifest through the hash annotation and its
    `metadata.generation`, never field by field (`sync.needs_apply`), so the bulk of a
    workload, its pod template's `spec` (containers, launch scripts, volumes), and a
    ConfigMap's data are dropped; a template's `metadata` (restart stamps, component labels),
    `spec.replicas`, `status` and the rest stay. Shares what it keeps with `obj`.
    """
    spec = obj.get("spec")
    template = spec.get("template") if isinstance(spec, Mapping) else None
    unread = UNREAD_CHILD_FIELDS.get(str(obj.get("kind")), ())
    if not (isinstance(template, Mapping) and "spec" in template) and not any(
        key in obj for key in unread
    ):
        return obj
    kept = {k: v for k, v in obj.items() if k not in unread}
    if isinstance(spec, Mapping) and isinstance(template, Mapping) and "spec" in template:
        kept["spec"] = {
            **spec,
            "template": {k: v for k, v in template.items() if k != "spec"},
        }
    return kept


class ClusterView(Protocol):
    """Read access to the watched state (kopf indexes in production, dicts in tests)."""

    def dgd(self, key: Key) -> Mapping[str, Any] | None:
        """The live DGD, or None when it does not exist."""
        ...

    def children(self, key: Key) -> list[Mapping[str, Any]]:
        """Every live object labelled as a child of the DGD."""
        ...

    def shared_objects(self, namespace: str) -> set[SharedKey]:
        """(kind, name) of the namespace-wide objects we manage that exist in `namespace`."""
        ...

    def pull_secrets(self, namespace: str) -> dict[str, tuple[str, ...]]:
        """Registry host to image pull Secret names discovered in `namespace`."""
        ...

    def group_pods(self, key: Key) -> list[Mapping[str, Any]]:
        """Pods of the DGD's multinode groups (summaries, see `groups.pod_summary`)."""
        ...

    def graph_pods(self, key: Key) -> list[Mapping[str, Any]]:
        """Every pod labelled with the DGD's name (summaries, see `groups.pod_summary`)."""
        ...

    def object_counts(self) -> dict[str, int]:
        """Number of watched DGDs and children, by kind."""
        ...


class IndexedClusterView:
    """`ClusterView` over in-memory indexes that `handlers.py` fills from informer events."""

    def __init__(self) -> None:
        self.dgds: Index[Key, Mapping[str, Any]] = Index()
        self.children_index: Index[Key, Mapping[str, Any]] = Index()
        self.shared: Index[str, SharedKey] = Index()
        self.secrets: Index[str, tuple[str, tuple[str, ...]]] = Index()
        self.pods: Index[Key, Mapping[str, Any]] = Index()

    def dgd(self, key: Key) -> Mapping[str, Any] | None:
        """The live DGD body for `key` (a live one wins over one being deleted)."""
        bodies = self.dgds.values(key)
        bodies.sort(key=lambda b: bool((b.get("metadata") or {}).get("deletionTimestamp")))
        return bodies[0] if bodies else None

    def dgd_keys(self, namespace: str) -> list[Key]:
        """Keys of every DGD in `namespace`."""
        return [key for key in self.dgds if key[0] == namespace]

    def children(self, key: Key) -> list[Mapping[str, Any]]:
        """Every indexed child labelled with the DGD's name in its namespace."""
        return self.children_index.values(key)

    def shared_objects(self, namespace: str) -> set[SharedKey]:
        """Namespace-wide objects carrying our managed-by label and no graph label."""
        return set(self.shared.values(namespace))

    def pull_secrets(self, namespace: str) -> dict[str, tuple[str, ...]]:
        """Registry host to docker-registry Secret names in `namespace` (discovery)."""
        by_registry: dict[str, set[str]] = {}
        for secret_name, registries in self.secrets.values(namespace):
            for registry in registries:
                by_registry.setdefault(registry, set()).add(secret_name)
        return {registry: tuple(sorted(names)) for registry, names in by_registry.items()}

    def group_pods(self, key: Key) -> list[Mapping[str, Any]]:
        """Summaries of the multinode group pods labelled with the DGD's name."""
        return [
            pod
            for pod in self.pods.values(key)
            if LABEL_GROUP_INDEX in ((pod.get("metadata") or {}).get("labels") or {})
        ]

    def graph_pods(self, key: Key) -> list[Mapping[str, Any]]:
        """Summaries of every pod labelled with the DGD's name."""
        return self.pods.values(key)

    def object_counts(self) -> dict[str, int]:
        """Watched DGDs and children by kind (for the managed-objects gauge)."""
        counts: dict[str, int] = {DGD_KIND: sum(1 for _ in self.dgds.all_values())}
        for obj in self.children_index.all_values():
            kind = str(obj.get("kind"))
            counts[kind] = counts.get(kind, 0) + 1
        return counts
