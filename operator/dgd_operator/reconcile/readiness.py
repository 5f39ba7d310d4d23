"""Readiness of workloads and the DGD status computed from them (pure, Dynamo §4.2 semantics).

A Deployment is ready when it is not paused and either wants 0 replicas, or the controller has
observed the latest generation, every desired replica is updated and available, no surplus old
replica remains (`status.replicas == desired`), and its `Available` condition is True.
A StatefulSet (our multinode leader/worker sets) is ready on the same counters with
`readyReplicas` in place of the Available condition.

A graph that is not ready says why, in Dynamo's reason classes: `insufficient_capacity` (a pod
the scheduler cannot place, or one held at a scheduling gate), `updating` (a rollout still
replacing pods), `pods_not_ready` (pods placed and rolled out but not ready), or
`mixed_not_ready_reasons` when components differ; `some_resources_are_not_ready` for what
cannot be classified (a missing child). Each not-ready workload's entry in the message carries
the first pod cause found (by pod name): the scheduler's message, a waiting container's reason
(`CrashLoopBackOff`, `ImagePullBackOff`, ...) with its message, and the last exit code and
reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dgd_operator.api.constants import (
    LABEL_COMPONENT,
    LABEL_DYNAMO_NAMESPACE,
    LABEL_WORKER_HASH,
    REASON_ALL_READY,
    REASON_INSUFFICIENT_CAPACITY,
    REASON_MIXED_NOT_READY,
    REASON_NOT_READY,
    REASON_PODS_NOT_READY,
    REASON_UPDATING,
    STATE_PENDING,
    STATE_SUCCESSFUL,
)

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet"})


@dataclass(frozen=True)
class Readiness:
    """Whether one object is ready, and if not, a short human reason."""

    ready: bool
    reason: str = ""


def _int(value: Any, default: int = 0) -> int:
    return int(value) if isinstance(value, int) else default


def desired_replicas(obj: Mapping[str, Any]) -> int:
    """`spec.replicas` with Kubernetes' default of 1."""
    return _int((obj.get("spec") or {}).get("replicas"), 1)


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def deployment_readiness(obj: Mapping[str, Any]) -> Readiness:
    """Readiness of a Deployment, exactly as Dynamo judges it."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if spec.get("paused"):
        return Readiness(False, "Deployment is paused")
    desired = desired_replicas(obj)
    if desired == 0:
        return Readiness(True)
    generation = _int((obj.get("metadata") or {}).get("generation"))
    if _int(status.get("observedGeneration")) < generation:
        return Readiness(False, "rollout not yet observed by the Deployment controller")
    updated = _int(status.get("updatedReplicas"))
    if updated < desired:
        return Readiness(False, f"{updated}/{desired} replicas updated")
    available = _int(status.get("availableReplicas"))
    if available < desired:
        return Readiness(False, f"{available}/{desired} replicas available")
    total = _int(status.get("replicas"))
    if total != desired:
        return Readiness(False, f"{total - desired} old replicas still terminating")
    cond = _condition(obj, "Available")
    if cond is None or cond.get("status") != "True":
        detail = f": {cond.get('reason')}" if cond and cond.get("reason") else ""
        return Readiness(False, f"Available condition is not True{detail}")
    return Readiness(True)


def statefulset_readiness(obj: Mapping[str, Any]) -> Readiness:
    """Readiness of a StatefulSet (one leader or worker set of a multinode group)."""
    status = obj.get("status") or {}
    desired = desired_replicas(obj)
    if desired == 0:
        return Readiness(True)
    generation = _int((obj.get("metadata") or {}).get("generation"))
    if _int(status.get("observedGeneration")) < generation:
        return Readiness(False, "rollout not yet observed by the StatefulSet controller")
    updated = _int(status.get("updatedReplicas"))
    if updated < desired:
        return Readiness(False, f"{updated}/{desired} pods updated")
    ready = _int(status.get("readyReplicas"))
    if ready < desired:
        return Readiness(False, f"{ready}/{desired} pods ready")
    available = _int(status.get("availableReplicas"), ready)
    if available < desired:
        return Readiness(False, f"{available}/{desired} pods available")
    total = _int(status.get("replicas"))
    if total != desired:
        return Readiness(False, f"{total}/{desired} pods exist")
    return Readiness(True)


def object_readiness(obj: Mapping[str, Any] | None) -> Readiness:
    """Readiness of any child: workloads by their counters, everything else ready if present."""
    if obj is None:
        return Readiness(False, "resource not found")
    kind = obj.get("kind")
    if kind == "Deployment":
        return deployment_readiness(obj)
    if kind == "StatefulSet":
        return statefulset_readiness(obj)
    return Readiness(True)


CRASH_LOOP = "CrashLoopBackOff"
BENIGN_WAITING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})
"""Waiting reasons of a container that is merely starting: no cause worth naming."""


@dataclass(frozen=True)
class PodCause:
    """Why one pod is not ready: Dynamo's reason class and a one-line explanation."""

    reason: str
    text: str


def _last_exit(container: Mapping[str, Any]) -> str:
    terminated = ((container.get("lastState") or {}).get("terminated")) or {}
    if not terminated:
        return ""
    detail = f" ({terminated['reason']})" if terminated.get("reason") else ""
    return f", last exit {terminated.get('exitCode')}{detail}"


def pod_cause(pod: Mapping[str, Any]) -> PodCause | None:
    """The first reason pod `pod` (a summary, see `groups.pod_summary`) is not ready, or None.

    In order: the scheduler cannot place it (or a scheduling gate holds it); a container waits
    for a reason other than starting up, or has terminated; the pod's `Ready` condition is
    False with a message. A pod being deleted has no cause.
    """
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None
    name = meta.get("name")
    status = pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    scheduled = conditions.get("PodScheduled") or {}
    if scheduled.get("status") == "False":
        why = scheduled.get("message") or scheduled.get("reason") or "not scheduled"
        return PodCause(REASON_INSUFFICIENT_CAPACITY, f"pod {name}: {why}")
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        where = f"pod {name} container {container.get('name')}"
        waiting = state.get("waiting") or {}
        if waiting and waiting.get("reason") not in BENIGN_WAITING_REASONS:
            # A crash loop's message only restates the growing back-off; leaving it out keeps
            # the status from changing at every restart.
            message = (
                f": {waiting['message']}"
                if waiting.get("message") and waiting.get("reason") != CRASH_LOOP
                else ""
            )
            text = f"{where}: {waiting.get('reason') or 'waiting'}{message}{_last_exit(container)}"
            return PodCause(REASON_PODS_NOT_READY, text)
        terminated = state.get("terminated") or {}
        if terminated:
            detail = f" ({terminated['reason']})" if terminated.get("reason") else ""
            text = f"{where}: exited {terminated.get('exitCode')}{detail}"
            return PodCause(REASON_PODS_NOT_READY, text)
    ready = conditions.get("Ready") or {}
    if ready.get("status") == "False" and ready.get("message"):
        return PodCause(REASON_PODS_NOT_READY, f"pod {name}: {ready['message']}")
    return None


def first_pod_cause(pods: Iterable[Mapping[str, Any]]) -> PodCause | None:
    """The cause of the first pod (by name) that has one; scheduling causes first."""
    causes = [
        cause
        for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name")))
        if (cause := pod_cause(pod)) is not None
    ]
    causes.sort(key=lambda c: c.reason != REASON_INSUFFICIENT_CAPACITY)
    return causes[0] if causes else None


def workload_pods(
    obj: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The pods of workload `obj`: a StatefulSet's by name (`<set>-<ordinal>`), a Deployment's
    by its component label (a service's pods, whichever ReplicaSet made them)."""
    name = _name(obj)
    if obj.get("kind") == "StatefulSet":
        return [
            pod
            for pod in pods
            if str((pod.get("metadata") or {}).get("name", "")).rpartition("-")[0] == name
        ]
    service = service_of(obj)
    return [
        pod
        for pod in pods
        if ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_COMPONENT) == service
        and service is not None
    ]


def not_ready_class(
    obj: Mapping[str, Any], current: Mapping[str, Any] | None, cause: PodCause | None
) -> str:
    """Dynamo's reason class of one not-ready child (Grove's order: capacity, update, pods)."""
    if cause is not None and cause.reason == REASON_INSUFFICIENT_CAPACITY:
        return REASON_INSUFFICIENT_CAPACITY
    if current is None or obj.get("kind") not in WORKLOAD_KINDS:
        return REASON_NOT_READY
    status = current.get("status") or {}
    desired = desired_replicas(current)
    generation = _int((current.get("metadata") or {}).get("generation"))
    if (
        _int(status.get("observedGeneration")) < generation
        or _int(status.get("updatedReplicas")) < desired
        or _int(status.get("replicas")) != desired
    ):
        return REASON_UPDATING
    return REASON_PODS_NOT_READY


def service_of(obj: Mapping[str, Any]) -> str | None:
    """The DGD service a child belongs to, from the `nvidia.com/dynamo-component` label."""
    meta = obj.get("metadata") or {}
    label = (meta.get("labels") or {}).get(LABEL_COMPONENT)
    if label:
        return str(label)
    template_meta = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
    label = (template_meta.get("labels") or {}).get(LABEL_COMPONENT)
    return str(label) if label else None


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _runtime_namespace(desired: Sequence[Mapping[str, Any]]) -> str | None:
    """The Dynamo namespace the pods run in: their `nvidia.com/dynamo-namespace` label, with
    `-<worker hash>` for a worker generation (`DYN_NAMESPACE_WORKER_SUFFIX`)."""
    for obj in desired:
        template = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
        labels = template.get("labels") or {}
        value = labels.get(LABEL_DYNAMO_NAMESPACE)
        if value:
            suffix = labels.get(LABEL_WORKER_HASH)
            return f"{value}-{suffix}" if suffix else str(value)
    return None


def _scheduled(pods: Iterable[Mapping[str, Any]]) -> int:
    return sum(
        1
        for pod in pods
        if (pod.get("spec") or {}).get("nodeName")
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
    )


def service_status(
    desired: Sequence[Mapping[str, Any]],
    live: Mapping[str, Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """`status.services[svc]` for one service from its desired workloads and their live state.

    `live` maps workload name to the live object. A single-node service has one Deployment; a
    multinode service has a leader and a worker StatefulSet per replica group, and its counters
    count groups (a group is ready when both of its sets are ready), like Dynamo's LWS status.
    With `pods` (the graph's pod summaries), `scheduledReplicas` counts the pods bound to a
    node (groups: those with every pod bound).
    """
    names = sorted(_name(obj) for obj in desired)
    kinds = {str(obj.get("kind")) for obj in desired}
    kind = (
        "Deployment"
        if kinds == {"Deployment"}
        else "StatefulSet"
        if kinds == {"StatefulSet"}
        else "/".join(sorted(kinds))
    )
    result: dict[str, Any] = {"componentKind": kind, "componentNames": names}
    runtime = _runtime_namespace(desired)
    if runtime:
        result["runtimeNamespace"] = runtime
    if kind == "Deployment":
        replicas = updated = ready = available = scheduled = 0
        for name in names:
            status = (live.get(name) or {}).get("status") or {}
            replicas += _int(status.get("replicas"))
            updated += _int(status.get("updatedReplicas"))
            ready += _int(status.get("readyReplicas"))
            available += _int(status.get("availableReplicas"))
        if pods is not None and desired:
            scheduled = _scheduled(workload_pods(desired[0], pods))
    else:
        groups: dict[str, list[str]] = {}
        for name in names:
            group = name[:-4] if name.endswith(("-ldr", "-wkr")) else name
            groups.setdefault(group, []).append(name)
        replicas = updated = ready = scheduled = 0
        by_name = {_name(obj): obj for obj in desired}
        for members in groups.values():
            objs = [live.get(member) for member in members]
            if pods is not None and all(
                _scheduled(workload_pods(by_name[member], pods))
                >= desired_replicas(by_name[member])
                for member in members
            ):
                scheduled += 1
            if all(obj is not None for obj in objs):
                replicas += 1
            if all(
                obj is not None
                and _int((obj.get("status") or {}).get("updatedReplicas")) >= desired_replicas(obj)
                for obj in objs
            ):
                updated += 1
            if all(object_readiness(obj).ready for obj in objs):
                ready += 1
        available = ready
    result.update(
        replicas=replicas, updatedReplicas=updated, readyReplicas=ready, availableReplicas=available
    )
    if pods is not None:
        result["scheduledReplicas"] = scheduled
    return result


@dataclass(frozen=True)
class GraphReadiness:
    """Aggregate readiness of a DGD's children: the `state` and `Ready` condition to report."""

    state: str
    reason: str
    message: str
    services: dict[str, dict[str, Any]]

    @property
    def ready(self) -> bool:
        """True when every child is ready."""
        return self.state == STATE_SUCCESSFUL


def graph_readiness(
    desired: Iterable[Mapping[str, Any]],
    live: Mapping[tuple[str, str], Mapping[str, Any]],
    services: Mapping[str, Sequence[str]] | None = None,
    pods: Sequence[Mapping[str, Any]] | None = None,
) -> GraphReadiness:
    """Readiness of the whole graph.

    `live` maps (kind, name) to the live child; `services` maps each DGD service to the names
    of its workloads (from the builders); without it, workloads are grouped by their
    `nvidia.com/dynamo-component` label. `pods` (summaries of the graph's pods; None: not
    known) supply the first pod cause of each not-ready workload, the reason class and
    `scheduledReplicas`.
    """
    not_ready: list[str] = []
    classes: set[str] = set()
    workloads: dict[str, Mapping[str, Any]] = {}
    live_by_name: dict[str, Mapping[str, Any]] = {}
    for obj in sorted(desired, key=_name):
        kind = str(obj.get("kind"))
        current = live.get((kind, _name(obj)))
        readiness = object_readiness(current)
        if not readiness.ready:
            cause = None
            if pods is not None and kind in WORKLOAD_KINDS:
                cause = first_pod_cause(workload_pods(obj, pods))
            classes.add(not_ready_class(obj, current, cause))
            detail = f" ({cause.text})" if cause is not None else ""
            not_ready.append(f"{_name(obj)}: {readiness.reason}{detail}")
        if kind in WORKLOAD_KINDS:
            workloads[_name(obj)] = obj
            if current is not None:
                live_by_name[_name(obj)] = current
    if services is None:
        grouped: dict[str, list[str]] = {}
        for wname, obj in workloads.items():
            svc = service_of(obj)
            if svc is not None:
                grouped.setdefault(svc, []).append(wname)
        services = grouped
    per_service = {
        svc: service_status([workloads[n] for n in names if n in workloads], live_by_name, pods)
        for svc, names in sorted(services.items())
    }
    if not_ready:
        reason = classes.pop() if len(classes) == 1 else REASON_MIXED_NOT_READY
        return GraphReadiness(
            STATE_PENDING, reason, "Resources not ready: " + "; ".join(not_ready), per_service
        )
    return GraphReadiness(
        STATE_SUCCESSFUL, REASON_ALL_READY, "All resources are ready", per_service
    )
