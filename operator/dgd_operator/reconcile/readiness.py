"""Readiness of workloads and the DGD status computed from them (pure, Dynamo §4.2 semantics).

A Deployment is ready when it is not paused and either wants 0 replicas, or the controller has
observed the latest generation, every desired replica is updated and available, no surplus old
replica remains (`status.replicas == desired`), and its `Available` condition is True.
A StatefulSet (our multinode leader/worker sets) is ready on the same counters with
`readyReplicas` in place of the Available condition.
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
    REASON_NOT_READY,
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


def service_status(
    desired: Sequence[Mapping[str, Any]], live: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """`status.services[svc]` for one service from its desired workloads and their live state.

    `live` maps workload name to the live object. A single-node service has one Deployment; a
    multinode service has a leader and a worker StatefulSet per replica group, and its counters
    count groups (a group is ready when both of its sets are ready), like Dynamo's LWS status.
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
        replicas = updated = ready = available = 0
        for name in names:
            status = (live.get(name) or {}).get("status") or {}
            replicas += _int(status.get("replicas"))
            updated += _int(status.get("updatedReplicas"))
            ready += _int(status.get("readyReplicas"))
            available += _int(status.get("availableReplicas"))
    else:
        groups: dict[str, list[str]] = {}
        for name in names:
            group = name[:-4] if name.endswith(("-ldr", "-wkr")) else name
            groups.setdefault(group, []).append(name)
        replicas = updated = ready = 0
        for members in groups.values():
            objs = [live.get(member) for member in members]
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
) -> GraphReadiness:
    """Readiness of the whole graph.

    `live` maps (kind, name) to the live child; `services` maps each DGD service to the names
    of its workloads (from the builders); without it, workloads are grouped by their
    `nvidia.com/dynamo-component` label.
    """
    not_ready: list[str] = []
    workloads: dict[str, Mapping[str, Any]] = {}
    live_by_name: dict[str, Mapping[str, Any]] = {}
    for obj in sorted(desired, key=_name):
        kind = str(obj.get("kind"))
        current = live.get((kind, _name(obj)))
        readiness = object_readiness(current)
        if not readiness.ready:
            not_ready.append(f"{_name(obj)}: {readiness.reason}")
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
        svc: service_status([workloads[n] for n in names if n in workloads], live_by_name)
        for svc, names in sorted(services.items())
    }
    if not_ready:
        return GraphReadiness(
            STATE_PENDING,
            REASON_NOT_READY,
            "Resources not ready: " + "; ".join(not_ready),
            per_service,
        )
    return GraphReadiness(
        STATE_SUCCESSFUL, REASON_ALL_READY, "All resources are ready", per_service
    )
