"""Gang placement of multinode groups with Kubernetes' own scheduler (pure).

A multinode group (one leader pod plus N-1 worker pods, one GPU node each) is useless until all N
pods run. Kubernetes 1.37 schedules such groups all-or-nothing itself: a ``PodGroup``
(``scheduling.k8s.io/v1beta1``) with a gang policy of ``minCount: N``, and pods that name it in
``spec.schedulingGroup.podGroupName``. kube-scheduler's GangScheduling plugin then binds none of
the group's pods until it has found room for N of them.

This module answers three questions, without any API call:

* is the PodGroup API served? (:func:`find_pod_group_api`, over a discovery document);
* which PodGroup does a group need? (:func:`build_pod_group`);
* which pod-spec fields make the group's pods join it, carry the graph's priority and pack into
  one topology domain? (:func:`gang_pod_fields`, :func:`apply_gang_fields`).

Two rules of the scheduler shape the output. Every pod of a group must have the same priority as
its PodGroup and the same ``schedulerName`` (otherwise the scheduler refuses the whole group), so
``priorityClassName`` goes on the PodGroup and on every pod, or on neither. And a topology domain
(``topologyConstraint.packDomain``, resolved to a node label key such as a rack label) becomes a
*required pod affinity* to the group's own pods with that label key as ``topologyKey``: the
default scheduler honours it on every cluster, with or without the PodGroup API, and during a gang
cycle it sees the pods already placed for the same group, so the whole group lands in one domain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from dgd_operator.api.constants import (
    LABEL_COMPONENT,
    LABEL_GRAPH,
    LABEL_GROUP_INDEX,
    POD_GROUP_KIND,
    POD_GROUP_PLURAL,
    POD_GROUP_VERSIONS,
    SCHEDULING_API_GROUP,
)
from dgd_operator.builders.placement import pack_term, with_pack_affinity

Manifest = dict[str, Any]

# Aggregated discovery (apidiscovery.k8s.io/v2) lists groups under `items`, a version's resources
# under `resources` with the plural in `resource`; the legacy per-version APIResourceList has
# `groupVersion` and `resources[].name`.
_AGGREGATED_KIND = "APIGroupDiscoveryList"
_LEGACY_KIND = "APIResourceList"
_NEEDED_VERBS = frozenset({"create", "get", "list", "patch", "delete"})


@dataclasses.dataclass(frozen=True)
class PodGroupApi:
    """Where the cluster serves PodGroups: ``apiVersion`` and the REST path under a namespace."""

    version: str
    group: str = SCHEDULING_API_GROUP
    plural: str = POD_GROUP_PLURAL
    kind: str = POD_GROUP_KIND

    @property
    def api_version(self) -> str:
        """The ``apiVersion`` of a PodGroup manifest, e.g. ``scheduling.k8s.io/v1beta1``."""
        return f"{self.group}/{self.version}"

    def collection_path(self, namespace: str) -> str:
        """``/apis/<group>/<version>/namespaces/<ns>/podgroups``."""
        return f"/apis/{self.group}/{self.version}/namespaces/{namespace}/{self.plural}"


def _serves_pod_groups(resources: Iterable[Mapping[str, Any]], name_key: str) -> bool:
    for resource in resources:
        if resource.get(name_key) != POD_GROUP_PLURAL:
            continue
        verbs = set(resource.get("verbs") or ())
        return verbs >= _NEEDED_VERBS
    return False


def find_pod_group_api(
    discovery: Mapping[str, Any] | Iterable[Mapping[str, Any]],
) -> PodGroupApi | None:
    """The PodGroup API version the cluster serves and we can write, or None.

    ``discovery`` is either the aggregated discovery document of ``GET /apis``
    (``APIGroupDiscoveryList``, apidiscovery.k8s.io/v2) or one or more legacy per-version
    documents (``APIResourceList`` of ``GET /apis/scheduling.k8s.io/<version>``). A version
    counts only if it lists ``podgroups`` with the verbs a controller needs; of those, the first
    in :data:`~dgd_operator.api.constants.POD_GROUP_VERSIONS` wins (a version whose shape we do
    not know is never used).
    """
    documents: list[Mapping[str, Any]] = (
        [discovery] if isinstance(discovery, Mapping) else list(discovery)
    )
    served: set[str] = set()
    for document in documents:
        kind = document.get("kind")
        if kind == _AGGREGATED_KIND:
            for group in document.get("items") or ():
                if (group.get("metadata") or {}).get("name") != SCHEDULING_API_GROUP:
                    continue
                for version in group.get("versions") or ():
                    if _serves_pod_groups(version.get("resources") or (), "resource"):
                        served.add(str(version.get("version")))
        elif kind == _LEGACY_KIND:
            group_version = str(document.get("groupVersion", ""))
            group, _, version = group_version.partition("/")
            if group == SCHEDULING_API_GROUP and _serves_pod_groups(
                document.get("resources") or (), "name"
            ):
                served.add(version)
    for version in POD_GROUP_VERSIONS:
        if version in served:
            return PodGroupApi(version=version)
    return None


def pod_group_name(dgd_name: str, service: str, group: int) -> str:
    """``<dgd>-<lower(service)>-<group>``: the PodGroup of one multinode group.

    Its leader and worker StatefulSets are this name plus ``-ldr`` / ``-wkr``.
    """
    return f"{dgd_name}-{service.lower()}-{group}"


def group_member_labels(dgd_name: str, service: str, group: int) -> dict[str, str]:
    """Labels that every pod of the group carries and no other pod in the namespace does."""
    return {LABEL_GRAPH: dgd_name, LABEL_COMPONENT: service, LABEL_GROUP_INDEX: str(group)}


@dataclasses.dataclass(frozen=True)
class GangGroup:
    """One multinode group, as the gang builder needs it.

    ``node_count`` is the group's size N (leader + N-1 workers); ``member_labels`` select exactly
    the group's pods; ``pack_domain_key`` is the node label key of the topology domain to pack
    the group into (None: no packing); ``labels`` go on the PodGroup's metadata.
    """

    name: str
    node_count: int
    member_labels: Mapping[str, str]
    priority_class_name: str | None = None
    pack_domain_key: str | None = None
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.node_count < 1:
            raise ValueError(f"a group has at least one node, got {self.node_count}")
        if self.pack_domain_key is not None and not self.member_labels:
            raise ValueError("packing into a topology domain needs labels that select the group")


def build_pod_group(group: GangGroup, api: PodGroupApi) -> Manifest:
    """The PodGroup of ``group``: a gang policy with ``minCount`` = the group's node count.

    ``priorityClassName`` is copied from the graph because the scheduler requires a group's pods
    and its PodGroup to have the same priority. ``minCount`` may change later (scaling a group's
    node count); the policy kind and the priority class are immutable.
    """
    spec: Manifest = {"schedulingPolicy": {"gang": {"minCount": group.node_count}}}
    if group.priority_class_name:
        spec["priorityClassName"] = group.priority_class_name
    metadata: Manifest = {"name": group.name}
    if group.labels:
        metadata["labels"] = dict(group.labels)
    return {"apiVersion": api.api_version, "kind": api.kind, "metadata": metadata, "spec": spec}


def pack_affinity_term(group: GangGroup) -> Manifest | None:
    """The required pod-affinity term that keeps the group's pods in one domain, or None."""
    if group.pack_domain_key is None:
        return None
    return pack_term(group.member_labels, group.pack_domain_key)


def gang_pod_fields(group: GangGroup, api: PodGroupApi | None) -> Manifest:
    """Pod-spec fields for every pod of ``group``.

    * ``schedulingGroup.podGroupName`` when the PodGroup API is served (``api`` not None);
    * ``priorityClassName`` when the graph asked for one;
    * a required pod affinity to the group's own pods with the domain label as topology key,
      when the group is packed into a topology domain.

    Fields that do not apply are absent; merge with :func:`apply_gang_fields`.
    """
    fields: Manifest = {}
    if api is not None:
        fields["schedulingGroup"] = {"podGroupName": group.name}
    if group.priority_class_name:
        fields["priorityClassName"] = group.priority_class_name
    term = pack_affinity_term(group)
    if term is not None:
        fields["affinity"] = {
            "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
        }
    return fields


def apply_gang_fields(pod_spec: Mapping[str, Any], fields: Mapping[str, Any]) -> Manifest:
    """A copy of ``pod_spec`` with :func:`gang_pod_fields` merged in.

    Scalar fields replace the pod's own; the pack affinity term is appended to any required pod
    affinity terms the pod already has (the user's node or pod affinities stay in force), and is
    not added twice.
    """
    merged: Manifest = {key: value for key, value in pod_spec.items()}
    for key, value in fields.items():
        if key != "affinity":
            merged[key] = value
    new_terms = ((fields.get("affinity") or {}).get("podAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or []
    return with_pack_affinity(merged, list(new_terms))
