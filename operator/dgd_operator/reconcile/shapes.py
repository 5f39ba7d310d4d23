"""What the watch cache decodes of its two busiest kinds: workloads and graph pods.

Each child Deployment or StatefulSet changes several times while it rolls out, and each graph
pod as it is scheduled and starts, so these two kinds are most of what the operator decodes
(at 300 graphs: ~17 Deployment and ~12 pod events per graph, 8 KB each). The structs below
name the fields the cache keeps (`view.cached_child` after `handlers.slim`, and
`groups.pod_summary`); the decoder skips the rest without building it:

- a workload: everything but its pod template's `spec` and the `fieldsV1` of its ownership
  entries;
- a pod: what `pod_summary` reads, plus the identity and version an informer needs.

A field added to `cached_child` or `pod_summary` must be added here too;
`tests/unit/test_watch_shapes.py` decodes full objects both ways and compares the cache's
entries.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from dgd_operator.controllerkit.decoding import Shape

Field = Any | UnsetType
"""A field decoded generically (absent stays absent)."""


class ManagedFieldsEntry(msgspec.Struct):
    """An ownership entry without its field set (`fieldsV1`, the bulk of a created object)."""

    manager: Field = UNSET
    operation: Field = UNSET
    apiVersion: Field = UNSET  # noqa: N815 (the API's spelling)
    time: Field = UNSET
    fieldsType: Field = UNSET  # noqa: N815
    subresource: Field = UNSET


class ObjectMeta(msgspec.Struct):
    """Every field of `metadata`; ownership entries lean."""

    name: Field = UNSET
    generateName: Field = UNSET  # noqa: N815
    namespace: Field = UNSET
    selfLink: Field = UNSET  # noqa: N815
    uid: Field = UNSET
    resourceVersion: Field = UNSET  # noqa: N815
    generation: Field = UNSET
    creationTimestamp: Field = UNSET  # noqa: N815
    deletionTimestamp: Field = UNSET  # noqa: N815
    deletionGracePeriodSeconds: Field = UNSET  # noqa: N815
    labels: Field = UNSET
    annotations: Field = UNSET
    ownerReferences: Field = UNSET  # noqa: N815
    finalizers: Field = UNSET
    managedFields: list[ManagedFieldsEntry] | UnsetType | None = UNSET  # noqa: N815


class PodTemplate(msgspec.Struct):
    """A pod template's `metadata` (restart stamps, labels); its `spec` is never read."""

    metadata: Field = UNSET


class WorkloadSpec(msgspec.Struct):
    """Every field of a Deployment's and a StatefulSet's spec; the template lean."""

    replicas: Field = UNSET
    selector: Field = UNSET
    template: PodTemplate | UnsetType | None = UNSET
    minReadySeconds: Field = UNSET  # noqa: N815
    revisionHistoryLimit: Field = UNSET  # noqa: N815
    # Deployment
    strategy: Field = UNSET
    paused: Field = UNSET
    progressDeadlineSeconds: Field = UNSET  # noqa: N815
    # StatefulSet
    serviceName: Field = UNSET  # noqa: N815
    podManagementPolicy: Field = UNSET  # noqa: N815
    updateStrategy: Field = UNSET  # noqa: N815
    volumeClaimTemplates: Field = UNSET  # noqa: N815
    persistentVolumeClaimRetentionPolicy: Field = UNSET  # noqa: N815
    ordinals: Field = UNSET


class Workload(msgspec.Struct):
    """A Deployment or StatefulSet as the cache keeps it."""

    apiVersion: Field = UNSET  # noqa: N815
    kind: Field = UNSET
    metadata: ObjectMeta | UnsetType = UNSET
    spec: WorkloadSpec | UnsetType | None = UNSET
    status: Field = UNSET


class PodMeta(msgspec.Struct):
    """A pod's identity, version and labels."""

    name: Field = UNSET
    namespace: Field = UNSET
    uid: Field = UNSET
    resourceVersion: Field = UNSET  # noqa: N815
    labels: Field = UNSET
    deletionTimestamp: Field = UNSET  # noqa: N815


class PodSpec(msgspec.Struct):
    """Where the pod runs and which placement group it joined."""

    nodeName: Field = UNSET  # noqa: N815
    schedulingGroup: Field = UNSET  # noqa: N815


class ContainerStatus(msgspec.Struct):
    """What a restart decision reads of a container."""

    name: Field = UNSET
    restartCount: Field = UNSET  # noqa: N815
    state: Field = UNSET
    lastState: Field = UNSET  # noqa: N815


class PodStatus(msgspec.Struct):
    """Phase, readiness and container states."""

    phase: Field = UNSET
    reason: Field = UNSET
    conditions: Field = UNSET
    containerStatuses: list[ContainerStatus] | UnsetType | None = UNSET  # noqa: N815


class Pod(msgspec.Struct):
    """A graph pod as `pod_summary` reads it."""

    apiVersion: Field = UNSET  # noqa: N815
    kind: Field = UNSET
    metadata: PodMeta | UnsetType = UNSET
    spec: PodSpec | UnsetType | None = UNSET
    status: PodStatus | UnsetType | None = UNSET


WORKLOAD: Shape[Workload] = Shape(Workload)
POD: Shape[Pod] = Shape(Pod)
SHAPES: dict[str, Shape[Any]] = {"Deployment": WORKLOAD, "StatefulSet": WORKLOAD, "Pod": POD}
"""The lean decoder of each kind that has one (other kinds are decoded whole)."""
