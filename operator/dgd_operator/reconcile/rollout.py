"""Managed worker rollouts (pure planning, dynamo-v1beta1.md §9 semantics).

A graph whose services are all single-node runs its worker-class services (worker, prefill,
decode) as *generations*: Deployments `<dgd>-<lower(svc)>-<hash>` labelled
`nvidia.com/dynamo-worker-hash: <hash>`, whose pods run in the runtime namespace
`<base>-<hash>` (`DYN_NAMESPACE_WORKER_SUFFIX`). The hash covers every worker pod input except
replica counts and restart stamps, so a change of any worker's spec starts a new generation
while the old one keeps serving; frontends discover by the base namespace as a prefix and pick
one generation per request, so old and new workers never serve each other.

Each reconcile, per worker service, the new generation is scaled up and the old ones down with
Dynamo's surge/unavailable arithmetic (or Recreate: old to zero first, then the new one); once
every worker service is updated (new ready >= desired, old ready == 0) the old generations are
deleted. Everything here is derived from the live Deployments and the previous
`status.rollingUpdate`, so an operator restart resumes a rollout where it stood.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dgd_operator.api.constants import (
    COMPONENT_EPP,
    EVENT_RESTART_SUPERSEDED,
    EVENT_ROLLING_UPDATE_COMPLETED,
    EVENT_ROLLING_UPDATE_STARTED,
    INHERITED_DGD_ANNOTATIONS,
    LABEL_COMPONENT,
    LABEL_WORKER_HASH,
    RESTART_COMPLETED,
    RESTART_SUPERSEDED,
    ROLLING_COMPLETED,
    ROLLING_IN_PROGRESS,
    ROLLING_PENDING,
    WORKER_COMPONENT_TYPES,
)
from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.api.naming import component_name
from dgd_operator.reconcile.readiness import desired_replicas, object_readiness
from dgd_operator.reconcile.restart import RestartPlan
from dgd_operator.reconcile.sync import canonical_json

ROLLING_ACTIVE = (ROLLING_PENDING, ROLLING_IN_PROGRESS)
LEGACY_HASH = "legacy"
"""The generation of worker Deployments built before managed rollouts (no hash label)."""
DEFAULT_STEP = "25%"


def worker_services(dgd: DynamoGraphDeployment) -> list[str]:
    """The worker-class services of a graph whose workers roll out as generations.

    Empty when any service is multinode: like Dynamo, such graphs update in place.
    """
    services = dgd.spec.services
    if any(spec.is_multinode for spec in services.values()):
        return []
    return sorted(
        name
        for name, spec in services.items()
        if (spec.component_type or "") in WORKER_COMPONENT_TYPES
    )


HASH_IGNORED_SERVICE_FIELDS = frozenset(
    {"replicas", "scalingAdapter", "autoscaling", "ingress", "serviceName", "dynamoNamespace"}
)
"""Service fields that never change a worker pod (counts, routing): no new generation."""


def worker_hash_input(dgd: DynamoGraphDeployment, services: Sequence[str]) -> dict[str, Any]:
    """Everything a worker's pods are built from, replica counts and restart stamps left out:
    the worker services' specs and the graph-level fields merged into them."""
    spec = dgd.spec
    workers = {}
    for svc in services:
        dumped = spec.services[svc].model_dump(by_alias=True, exclude_none=True, mode="json")
        workers[svc] = {k: v for k, v in dumped.items() if k not in HASH_IGNORED_SERVICE_FIELDS}
    graph = spec.model_dump(
        by_alias=True,
        exclude_none=True,
        mode="json",
        include={"envs", "backend_framework", "annotations", "labels", "priority_class_name",
                 "topology_constraint", "pvcs"},
    )  # fmt: skip
    inherited = {
        key: dgd.metadata.annotations[key]
        for key in INHERITED_DGD_ANNOTATIONS
        if key in dgd.metadata.annotations
    }
    has_epp = any(s.component_type == COMPONENT_EPP for s in spec.services.values())
    return {"graph": graph, "annotations": inherited, "epp": has_epp, "workers": workers}


def current_worker_hash(dgd: DynamoGraphDeployment) -> tuple[str, dict[str, str]] | None:
    """The worker hash of a graph's spec and its worker services' Deployment names.

    The first 8 hex digits of sha256 over `worker_hash_input`: it changes exactly when a
    worker's pod inputs in the DGD change (operator settings roll workers in place, as
    Dynamo's DCD updates do). None when the graph updates its workers in place (no worker
    service, or a multinode one).
    """
    services = worker_services(dgd)
    if not services:
        return None
    # The same bytes as `json.dumps(sort_keys=True, separators=(",", ":"), default=str)`,
    # which named every existing generation, through orjson where it provably agrees.
    encoded = canonical_json(worker_hash_input(dgd, services))
    digest = hashlib.sha256(encoded).hexdigest()[:8]
    names = {svc: f"{component_name(dgd.metadata.name, svc)}-{digest}" for svc in services}
    return digest, names


def _count(obj: Mapping[str, Any], key: str) -> int:
    value = (obj.get("status") or {}).get(key)
    return value if isinstance(value, int) else 0


def generation_of(obj: Mapping[str, Any]) -> str:
    """The worker hash a live Deployment belongs to (`legacy` when it carries none)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return str(labels.get(LABEL_WORKER_HASH) or LEGACY_HASH)


def old_generations(
    live: Iterable[Mapping[str, Any]], services: Sequence[str], current: Mapping[str, str]
) -> dict[str, list[Mapping[str, Any]]]:
    """Per worker service, its live Deployments that are not the current generation's.

    `current` maps service to the name of its current-generation Deployment. Oldest first
    (creation time, then name), the order Dynamo scales them down in.
    """
    found: dict[str, list[Mapping[str, Any]]] = {}
    for obj in live:
        if obj.get("kind") != "Deployment":
            continue
        meta = obj.get("metadata") or {}
        svc = (meta.get("labels") or {}).get(LABEL_COMPONENT)
        if svc in services and meta.get("name") != current.get(str(svc)):
            found.setdefault(str(svc), []).append(obj)
    for objs in found.values():
        objs.sort(key=lambda o: (str(o["metadata"].get("creationTimestamp") or ""), _name(o)))
    return found


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def scaled_step(raw: object, desired: int, *, round_up: bool) -> int:
    """An int-or-percent surge/unavailable value as a replica count of `desired`."""
    text = str(raw if raw is not None else DEFAULT_STEP).strip()
    if text.endswith("%"):
        share = desired * int(text[:-1]) / 100
        return math.ceil(share) if round_up else math.floor(share)
    return int(text)


@dataclass(frozen=True)
class Counts:
    """Spec and available replicas of a set of Deployments (one side of a rollout)."""

    spec: int = 0
    available: int = 0
    ready: int = 0


def plan_rolling(
    desired: int, surge: int, unavailable: int, old: Counts, new: Counts
) -> tuple[int, int]:
    """(old target, new target) of one component for this reconcile (Dynamo's arithmetic)."""
    if surge == 0 and unavailable == 0:
        surge = 1
    min_available = desired - unavailable
    scale_down = min(
        max(0, old.spec + new.spec - min_available - max(0, new.spec - new.available)),
        max(0, old.spec - old.available) + max(0, old.available + new.available - min_available),
    )
    old_target = max(0, old.spec - scale_down)
    new_target = min(desired, new.spec + max(0, desired + surge - old.spec - new.spec))
    return old_target, new_target


def spread_old(old: Sequence[Mapping[str, Any]], target: int) -> dict[str, int]:
    """Share `target` replicas over the old Deployments (oldest first out, newest first back)."""
    counts = {_name(o): min(desired_replicas(o), _count(o, "availableReplicas")) for o in old}
    total = sum(counts.values())
    for obj in old:  # oldest first
        if total <= target:
            break
        cut = min(counts[_name(obj)], total - target)
        counts[_name(obj)] -= cut
        total -= cut
    for obj in reversed(old):  # newest first
        if total >= target:
            break
        room = desired_replicas(obj) - counts[_name(obj)]
        add = min(room, target - total)
        counts[_name(obj)] += add
        total += add
    return counts


def drained(obj: Mapping[str, Any]) -> bool:
    """An old Deployment scaled to zero whose controller saw it and whose pods are all gone."""
    generation = (obj.get("metadata") or {}).get("generation") or 0
    observed = (obj.get("status") or {}).get("observedGeneration") or 0
    return (
        desired_replicas(obj) == 0
        and observed >= generation
        and _count(obj, "replicas") == 0
        and _count(obj, "terminatingReplicas") == 0
    )


@dataclass(frozen=True)
class ComponentRollout:
    """The replica plan of one worker service in one reconcile."""

    service: str
    new_replicas: int
    old_replicas: dict[str, int]
    updated: bool


def plan_component(
    service: str,
    desired: int,
    strategy: Mapping[str, Any],
    new: Mapping[str, Any] | None,
    old: Sequence[Mapping[str, Any]],
) -> ComponentRollout:
    """Plan one worker service: `strategy` is its Deployment strategy as built, `new` the live
    current-generation Deployment (None before it exists), `old` its older ones, oldest first."""
    new_counts = (
        Counts(
            desired_replicas(new), _count(new, "availableReplicas"), _count(new, "readyReplicas")
        )
        if new is not None
        else Counts()
    )
    old_ready = sum(_count(o, "readyReplicas") for o in old)
    updated = new_counts.ready >= desired and old_ready == 0
    if strategy.get("type") == "Recreate":
        old_plan = {_name(o): 0 for o in old}
        new_target = desired if all(drained(o) for o in old) else 0
        return ComponentRollout(service, new_target, old_plan, updated and new_target == desired)
    step = strategy.get("rollingUpdate") or {}
    surge = scaled_step(step.get("maxSurge"), desired, round_up=True)
    unavailable = scaled_step(step.get("maxUnavailable"), desired, round_up=False)
    old_counts = Counts(
        sum(desired_replicas(o) for o in old),
        sum(_count(o, "availableReplicas") for o in old),
        old_ready,
    )
    old_target, new_target = plan_rolling(desired, surge, unavailable, old_counts, new_counts)
    return ComponentRollout(service, new_target, spread_old(old, old_target), updated)


@dataclass
class RolloutPlan:
    """What a reconcile does about the worker generations, and the status it reports."""

    worker_hash: str | None
    """The current generation (None: the graph updates its workers in place)."""
    components: dict[str, ComponentRollout] = field(default_factory=dict)
    old: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    """Per worker service, its older generations' live Deployments."""
    status: dict[str, Any] | None = None
    """`status.rollingUpdate` to report (None: never rolled)."""
    complete: bool = False
    """Every worker service is updated: delete the old generations now."""
    notices: list[tuple[str, str]] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    """Why the new generation is not ready yet (for the Ready message)."""

    @property
    def active(self) -> bool:
        """True while a rollout is Pending or InProgress."""
        return self.status is not None and self.status.get("phase") in ROLLING_ACTIVE


def plan_phase(
    previous: Mapping[str, Any] | None,
    *,
    services: Sequence[str],
    rolling: bool,
    updated: Sequence[str],
    now: str,
) -> tuple[dict[str, Any] | None, bool, list[tuple[str, str]]]:
    """(`status.rollingUpdate`, complete now?, Events) from the previous status and the rollout.

    `rolling`: old generations exist. `""` → Pending when they appear; Pending → InProgress on
    the next reconcile; InProgress → Completed once every worker service is updated.
    """
    before = dict(previous) if previous else None
    phase = (before or {}).get("phase")
    if not rolling:
        if phase in ROLLING_ACTIVE:  # old generations already gone (deleted by us earlier)
            done = {**(before or {}), "phase": ROLLING_COMPLETED, "endTime": now}
            done["updatedServices"] = list(services)
            return done, False, [(EVENT_ROLLING_UPDATE_COMPLETED, "rolling update completed")]
        return before, False, []
    if phase not in ROLLING_ACTIVE:
        started = {"phase": ROLLING_PENDING, "startTime": now, "updatedServices": list(updated)}
        return started, False, [(EVENT_ROLLING_UPDATE_STARTED, "rolling update started")]
    start = (before or {}).get("startTime") or now
    if phase == ROLLING_IN_PROGRESS and set(updated) >= set(services):
        done = {
            "phase": ROLLING_COMPLETED,
            "startTime": start,
            "endTime": now,
            "updatedServices": list(services),
        }
        return done, True, [(EVENT_ROLLING_UPDATE_COMPLETED, "rolling update completed")]
    progress = {"phase": ROLLING_IN_PROGRESS, "startTime": start, "updatedServices": list(updated)}
    return progress, False, []


def plan_rollout(
    worker_hash: str | None,
    services: Sequence[str],
    desired: Mapping[str, Mapping[str, Any]],
    live: Iterable[Mapping[str, Any]],
    previous: Mapping[str, Any] | None,
    *,
    now: str,
) -> RolloutPlan:
    """The rollout of a graph this reconcile.

    `desired` maps each worker service to its current-generation Deployment as built (full
    replica count); `live` is every live child of the graph; `previous` the live
    `status.rollingUpdate`.
    """
    if worker_hash is None:
        return RolloutPlan(None, status=dict(previous) if previous else None)
    live = list(live)
    names = {svc: _name(obj) for svc, obj in desired.items()}
    old = old_generations(live, services, names)
    by_name = {_name(o): o for o in live if o.get("kind") == "Deployment"}
    components: dict[str, ComponentRollout] = {}
    blocked: list[str] = []
    for svc in services:
        if svc not in desired:
            continue
        built = desired[svc]
        current = by_name.get(names[svc])
        components[svc] = plan_component(
            svc,
            desired_replicas(built),
            (built.get("spec") or {}).get("strategy") or {},
            current,
            old.get(svc, []),
        )
        if old.get(svc) and not components[svc].updated:
            why = object_readiness(current).reason if current is not None else "not created yet"
            blocked.append(f"{names[svc]}: {why or 'old generation still serving'}")
    updated = [svc for svc in services if svc not in old or components[svc].updated]
    status, complete, notices = plan_phase(
        previous, services=services, rolling=bool(old), updated=updated, now=now
    )
    plan = RolloutPlan(worker_hash, components, old, status, complete, notices, blocked)
    if not plan.active and not complete:
        # Nothing is rolling: every worker runs its full count in its only generation.
        plan.components = {
            svc: ComponentRollout(svc, desired_replicas(desired[svc]), {}, True)
            for svc in components
        }
    return plan


def supersede_restart(restart: RestartPlan, live_ids: Mapping[str, str]) -> RestartPlan:
    """A restart not completed while a rollout runs is `Superseded`: no new stamps (the new
    generation's pods are fresh anyway), `status.restart` says so (Dynamo §9)."""
    status = restart.status
    if status is None or status.get("phase") in (RESTART_COMPLETED, RESTART_SUPERSEDED):
        return restart
    superseded = {"observedID": status.get("observedID"), "phase": RESTART_SUPERSEDED}
    return RestartPlan(dict(live_ids), {**superseded, "inProgress": []})


def restart_superseded_notice(
    restart: RestartPlan, previous: Mapping[str, Any] | None
) -> list[tuple[str, str]]:
    """The Warning Event text of a restart superseded in this reconcile."""
    status = restart.status or {}
    if (
        status.get("phase") != RESTART_SUPERSEDED
        or (previous or {}).get("phase") == RESTART_SUPERSEDED
    ):
        return []
    return [
        (
            EVENT_RESTART_SUPERSEDED,
            f"restart {status.get('observedID')} superseded by the worker rolling update",
        )
    ]


def runtime_namespace(base: str, obj: Mapping[str, Any]) -> str:
    """The runtime namespace of a generation's pods: `<base>-<hash>` (legacy: `<base>`)."""
    generation = generation_of(obj)
    return base if generation == LEGACY_HASH else f"{base}-{generation}"


def merge_service_status(
    entry: Mapping[str, Any],
    old: Sequence[Mapping[str, Any]],
    targets: Mapping[str, int],
    base: str,
) -> dict[str, Any]:
    """`status.services[svc]` during a rollout: old and new generations together.

    Names sorted old + new, counters summed (`updatedReplicas` new only), and the runtime
    namespace of the old generation still targeted (the one serving) until cutover.
    """
    merged = dict(entry)
    merged["componentNames"] = sorted([*entry.get("componentNames", []), *map(_name, old)])
    for key in ("replicas", "readyReplicas", "availableReplicas"):
        merged[key] = int(entry.get(key) or 0) + sum(_count(o, key) for o in old)
    serving = [o for o in old if targets.get(_name(o), 0) > 0]
    if serving:
        merged["runtimeNamespace"] = runtime_namespace(base, serving[0])
    return merged


def pod_causes(pods: Iterable[Mapping[str, Any]], limit: int = 2) -> list[str]:
    """Why pods are not ready: waiting reasons, last exits, scheduling failures (first few)."""
    causes: list[str] = []
    for pod in sorted(pods, key=_name):
        status = pod.get("status") or {}
        cause = ""
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                cause = f"{cond.get('reason')}: {cond.get('message', '')}".strip()
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            last = (container.get("lastState") or {}).get("terminated") or {}
            if waiting.get("reason") and waiting.get("reason") != "ContainerCreating":
                cause = str(waiting["reason"])
                if last:
                    cause += f" (last exit {last.get('exitCode')}: {last.get('reason')})"
                elif waiting.get("message"):
                    cause += f": {waiting['message']}"
        if cause:
            causes.append(f"pod {_name(pod)}: {cause}")
        if len(causes) >= limit:
            break
    return causes
