"""Where a graph's pods are placed: scheduler queues, and which placement fields we act on (pure).

Dynamo users steer placement with a few fields and annotations. This module says what each one
does here, in one place, so the builders, `dgd validate` and admission warnings agree:

* `nvidia.com/kai-scheduler-queue` (DGD annotation): pods get `schedulerName: kai-scheduler`
  and the `kai.scheduler/queue` label, as Dynamo gives its Grove cliques;
* `nvidia.com/volcano-queue` (DGD annotation): pods get `schedulerName: volcano` and Volcano's
  `scheduling.volcano.sh/queue-name` pod annotation;
* in both cases a `schedulerName` the user set in `extraPodSpec` wins, and multinode groups of a
  pod with a scheduler other than the default get no Kubernetes PodGroup (that scheduler does
  its own gang placement; kube-scheduler's PodGroups mean nothing to it);
* `spec.priorityClassName` goes on every pod (and on each group's PodGroup);
* `multinode` groups are placed all-or-nothing through PodGroups when the cluster serves them;
* `topologyConstraint.packDomain` packs pods into one domain of a node label, by a required pod
  affinity to their own kind with the domain's node label as topology key: the graph's domain
  holds all of its pods, a single-node service's domain all of that service's pods, a multinode
  service's domain each of its groups (see `pack_affinity_terms`). Domain names map to node
  label keys through an operator setting (`DGD_TOPOLOGY_DOMAIN_KEYS`, defaults
  `DEFAULT_TOPOLOGY_DOMAIN_KEYS`); the profile name (`clusterTopologyName`) is not resolved, as
  there is no Grove ClusterTopology to read.

Why a pod affinity and not a node selector picked by the operator: the scheduler already knows
the free room of every node, the operator would have to copy it (and race other workloads);
and a picked domain written into the pod template would change the template, so re-picking
would roll the pods. With a required affinity to the pods of the same group, the first pod of
a group may go to any domain (Kubernetes lets a pod that matches its own affinity selector
start where none of its peers runs yet), and every later pod follows it. Pods of a gang that
wait at the scheduler's gate count as placed for affinity, so a gang packs whole or waits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dgd_operator.api.constants import (
    ANNOTATION_KAI_QUEUE,
    ANNOTATION_VOLCANO_QUEUE,
    ANNOTATION_VOLCANO_QUEUE_NAME,
    DEFAULT_SCHEDULER,
    DEFAULT_TOPOLOGY_DOMAIN_KEYS,
    KAI_SCHEDULER,
    LABEL_COMPONENT,
    LABEL_GRAPH,
    LABEL_KAI_QUEUE,
    VOLCANO_SCHEDULER,
)
from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.api.validation.errors import Problem, warning
from dgd_operator.api.validation.paths import to_v1beta1_path


@dataclass(frozen=True)
class QueuePlacement:
    """The scheduler and queue metadata a graph's pods get from its queue annotations."""

    scheduler_name: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


def queue_placement(dgd_annotations: Mapping[str, str]) -> QueuePlacement:
    """What the DGD's queue annotations ask of its pods (KAI wins when both are set)."""
    kai = dgd_annotations.get(ANNOTATION_KAI_QUEUE)
    if kai:
        return QueuePlacement(KAI_SCHEDULER, labels={LABEL_KAI_QUEUE: kai})
    volcano = dgd_annotations.get(ANNOTATION_VOLCANO_QUEUE)
    if volcano:
        return QueuePlacement(
            VOLCANO_SCHEDULER, annotations={ANNOTATION_VOLCANO_QUEUE_NAME: volcano}
        )
    return QueuePlacement()


def uses_default_scheduler(pod_spec: Mapping[str, object]) -> bool:
    """True when kube-scheduler places the pod (no `schedulerName`, or the default one)."""
    return pod_spec.get("schedulerName") in (None, "", DEFAULT_SCHEDULER)


@dataclass(frozen=True)
class PackDomain:
    """A topology domain a field asks pods to be packed into, resolved to a node label key."""

    path: str
    """The `packDomain` field that asks (v1alpha1 spelling)."""
    domain: str
    """The domain name as written (`rack`, `zone`, ...)."""
    key: str | None
    """Node label key of the domain; None when no label is known for the name."""


def graph_pack_domain(
    dgd: DynamoGraphDeployment, keys: Mapping[str, str] = DEFAULT_TOPOLOGY_DOMAIN_KEYS
) -> PackDomain | None:
    """The domain the whole graph is packed into (`spec.topologyConstraint.packDomain`)."""
    constraint = dgd.spec.topology_constraint
    if constraint is None or not constraint.pack_domain:
        return None
    domain = constraint.pack_domain
    return PackDomain("spec.topologyConstraint.packDomain", domain, keys.get(domain))


def service_pack_domain(
    dgd: DynamoGraphDeployment,
    service: str,
    keys: Mapping[str, str] = DEFAULT_TOPOLOGY_DOMAIN_KEYS,
) -> PackDomain | None:
    """The domain a service's own constraint names (a multinode service: each of its groups)."""
    constraint = dgd.spec.services[service].topology_constraint
    if constraint is None:
        return None
    domain = constraint.pack_domain
    path = f"spec.services.{service}.topologyConstraint.packDomain"
    return PackDomain(path, domain, keys.get(domain))


def pack_domains(
    dgd: DynamoGraphDeployment, keys: Mapping[str, str] = DEFAULT_TOPOLOGY_DOMAIN_KEYS
) -> list[PackDomain]:
    """Every domain the graph asks for (graph first, then services by name)."""
    found = [graph_pack_domain(dgd, keys)]
    found.extend(service_pack_domain(dgd, name, keys) for name in sorted(dgd.spec.services))
    return [domain for domain in found if domain is not None]


def pack_term(labels: Mapping[str, str], key: str) -> dict[str, Any]:
    """A required pod-affinity term: pods matching `labels` share one value of node label `key`."""
    return {"labelSelector": {"matchLabels": dict(labels)}, "topologyKey": key}


def pack_affinity_terms(
    dgd: DynamoGraphDeployment,
    service: str,
    keys: Mapping[str, str] = DEFAULT_TOPOLOGY_DOMAIN_KEYS,
) -> list[dict[str, Any]]:
    """Pod-affinity terms every pod of `service` gets from the packing constraints.

    The graph's domain packs all the graph's pods (label `LABEL_GRAPH`); a single-node
    service's own domain packs the service's pods. A multinode service's own domain packs each
    group separately: its term selects the group's pods, and is added by the group builder
    (`group_pack_key`). Domains without a known node label add nothing (the status says so).
    """
    terms: list[dict[str, Any]] = []
    graph = graph_pack_domain(dgd, keys)
    if graph is not None and graph.key:
        terms.append(pack_term({LABEL_GRAPH: dgd.metadata.name}, graph.key))
    own = service_pack_domain(dgd, service, keys)
    if own is not None and own.key and not dgd.spec.services[service].is_multinode:
        terms.append(pack_term({LABEL_GRAPH: dgd.metadata.name, LABEL_COMPONENT: service}, own.key))
    return terms


def group_pack_key(
    dgd: DynamoGraphDeployment,
    service: str,
    keys: Mapping[str, str] = DEFAULT_TOPOLOGY_DOMAIN_KEYS,
) -> str | None:
    """Node label key each group of multinode `service` is packed by (its own domain), or None.

    A group under only a graph-level domain needs no term of its own: the graph's term already
    keeps it, with every other pod of the graph, in one domain.
    """
    own = service_pack_domain(dgd, service, keys)
    return own.key if own is not None else None


def with_pack_affinity(pod_spec: Mapping[str, Any], terms: list[dict[str, Any]]) -> dict[str, Any]:
    """A copy of `pod_spec` with `terms` appended to its required pod-affinity terms.

    The user's own node and pod affinities stay in force; a term already present is not added
    twice.
    """
    merged: dict[str, Any] = {**pod_spec}
    if not terms:
        return merged
    affinity: dict[str, Any] = {**(pod_spec.get("affinity") or {})}
    pod_affinity: dict[str, Any] = {**(affinity.get("podAffinity") or {})}
    current = list(pod_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
    current.extend(term for term in terms if term not in current)
    pod_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = current
    affinity["podAffinity"] = pod_affinity
    merged["affinity"] = affinity
    return merged


def _pack_effect(domain: PackDomain, what: str, keys: Mapping[str, str]) -> tuple[bool, str]:
    if domain.key is None:
        known = ", ".join(sorted(keys))
        return False, (
            f"not acted on: no node label is known for domain {domain.domain!r} (known: "
            f"{known}; the operator setting DGD_TOPOLOGY_DOMAIN_KEYS adds more)"
        )
    return True, (
        f"{what} packed into one {domain.domain!r} domain (one value of node label "
        f"{domain.key}) by a required pod affinity"
    )


@dataclass(frozen=True)
class PlacementField:
    """One placement field the graph sets, and whether (and how) the operator acts on it."""

    path: str
    acted_on: bool
    effect: str


def placement_fields(
    dgd: DynamoGraphDeployment,
    *,
    pod_groups_served: bool | None = None,
    topology_keys: Mapping[str, str] = DEFAULT_TOPOLOGY_DOMAIN_KEYS,
) -> list[PlacementField]:
    """Every placement field `dgd` sets, with what the operator does with it.

    `pod_groups_served` is whether the target cluster serves the PodGroup API (None: unknown,
    e.g. `dgd validate` without a cluster); `topology_keys` maps domain names to node label
    keys (the operator's setting). For `dgd validate` and admission warnings.
    """
    fields: list[PlacementField] = []
    annotations = dgd.metadata.annotations
    queue = queue_placement(annotations)
    for key in (ANNOTATION_KAI_QUEUE, ANNOTATION_VOLCANO_QUEUE):
        if not annotations.get(key):
            continue
        scheduler = KAI_SCHEDULER if key == ANNOTATION_KAI_QUEUE else VOLCANO_SCHEDULER
        if queue.scheduler_name != scheduler:
            fields.append(
                PlacementField(
                    f"metadata.annotations[{key}]",
                    False,
                    f"ignored: {ANNOTATION_KAI_QUEUE} is set too and wins",
                )
            )
            continue
        fields.append(
            PlacementField(
                f"metadata.annotations[{key}]",
                True,
                f"pods get schedulerName {scheduler} (unless extraPodSpec sets one) and the "
                "queue; their multinode groups are left to that scheduler (no PodGroup)",
            )
        )
    if dgd.spec.priority_class_name:
        fields.append(
            PlacementField(
                "spec.priorityClassName",
                True,
                "set on every pod and on each multinode group's PodGroup",
            )
        )
    graph_domain = graph_pack_domain(dgd, topology_keys)
    if graph_domain is not None:
        acted, effect = _pack_effect(graph_domain, "all pods of the graph", topology_keys)
        fields.append(PlacementField(graph_domain.path, acted, effect))
    if dgd.spec.topology_constraint is not None:
        fields.append(
            PlacementField(
                "spec.topologyConstraint.topologyProfile",
                False,
                "not resolved (there is no Grove ClusterTopology): domain names map to node "
                "labels through the operator setting DGD_TOPOLOGY_DOMAIN_KEYS",
            )
        )
    for name in sorted(dgd.spec.services):
        service = dgd.spec.services[name]
        path = f"spec.services.{name}"
        own = service_pack_domain(dgd, name, topology_keys)
        if own is not None:
            what = "each group's pods" if service.is_multinode else "the service's pods"
            acted, effect = _pack_effect(own, what, topology_keys)
            fields.append(PlacementField(own.path, acted, effect))
        if not service.is_multinode:
            continue
        user_pod = service.extra_pod_spec.pod_spec() if service.extra_pod_spec else {}
        group_scheduler = user_pod.get("schedulerName") or queue.scheduler_name
        if group_scheduler not in (None, DEFAULT_SCHEDULER):
            effect, acted = f"groups placed by {group_scheduler}; no Kubernetes PodGroup", False
        elif pod_groups_served is None:
            effect, acted = "groups placed all-or-nothing when the cluster serves PodGroups", True
        elif pod_groups_served:
            effect, acted = "groups placed all-or-nothing through PodGroups", True
        else:
            effect = "groups placed pod by pod: the cluster does not serve PodGroups"
            acted = False
        fields.append(PlacementField(f"{path}.multinode", acted, effect))
    return fields


def placement_warnings(
    dgd: DynamoGraphDeployment,
    hub: Mapping[str, Any] | None = None,
    *,
    topology_keys: Mapping[str, str] = DEFAULT_TOPOLOGY_DOMAIN_KEYS,
    pod_groups_served: bool | None = None,
) -> list[Problem]:
    """`placement_fields` as warnings for `dgd validate` and admission: what each field does.

    Paths are in the spelling of the v1beta1 document `hub` when given (the user wrote
    v1beta1), else v1alpha1. Multinode gang placement is left out: it is what a multinode
    service always gets (the `GangPlacement` condition reports it per cluster).
    """
    problems: list[Problem] = []
    for item in placement_fields(
        dgd, pod_groups_served=pod_groups_served, topology_keys=topology_keys
    ):
        if item.path.endswith(".multinode"):
            continue
        path = to_v1beta1_path(item.path, hub)[0] if hub is not None else item.path
        verdict = "acted on" if item.acted_on else "not acted on"
        effect = item.effect.removeprefix("not acted on: ")
        problems.append(warning(path, f"placement, {verdict}: {effect}"))
    return problems
