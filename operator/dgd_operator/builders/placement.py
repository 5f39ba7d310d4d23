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
* `topologyConstraint` (graph and service) is accepted but not acted on: its `packDomain` names
  a domain of a cluster topology profile (Grove's ClusterTopology), which we do not resolve to a
  node label yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dgd_operator.api.constants import (
    ANNOTATION_KAI_QUEUE,
    ANNOTATION_VOLCANO_QUEUE,
    ANNOTATION_VOLCANO_QUEUE_NAME,
    DEFAULT_SCHEDULER,
    KAI_SCHEDULER,
    LABEL_KAI_QUEUE,
    VOLCANO_SCHEDULER,
)
from dgd_operator.api.models import DynamoGraphDeployment


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
class PlacementField:
    """One placement field the graph sets, and whether (and how) the operator acts on it."""

    path: str
    acted_on: bool
    effect: str


def placement_fields(
    dgd: DynamoGraphDeployment, *, pod_groups_served: bool | None = None
) -> list[PlacementField]:
    """Every placement field `dgd` sets, with what the operator does with it.

    `pod_groups_served` is whether the target cluster serves the PodGroup API (None: unknown,
    e.g. `dgd validate` without a cluster). For `dgd validate` and admission warnings.
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
    if dgd.spec.topology_constraint is not None:
        fields.append(
            PlacementField(
                "spec.topologyConstraint",
                False,
                "accepted, not acted on: topology profiles are not resolved to node labels",
            )
        )
    for name in sorted(dgd.spec.services):
        service = dgd.spec.services[name]
        path = f"spec.services.{name}"
        if service.topology_constraint is not None:
            fields.append(
                PlacementField(
                    f"{path}.topologyConstraint",
                    False,
                    "accepted, not acted on: topology profiles are not resolved to node labels",
                )
            )
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
