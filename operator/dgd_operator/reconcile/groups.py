"""Multinode group restarts: a group whose pod fails is recreated as a whole (pure planning).

A multinode group (one leader and one worker StatefulSet, `builders/multinode.py`) is one
distributed engine: when a single rank dies, the survivors hang in collectives or lose their
Ray/MPI peer, and restarting only that pod does not heal the group. So once a group has
*started* (every pod of it was Ready at the same time), any of these is a group failure:

* a pod of the group is deleted, or replaced by a new pod (different uid);
* a pod's main container restarts (its restartCount grows);
* a pod ends in phase Failed.

The reaction is to delete every pod of the group (both StatefulSets). The StatefulSets stay
untouched: they are the desired state, and the StatefulSet controller recreates all pods at
once (`podManagementPolicy: Parallel`) with the same names, ranks and DNS names. Deleting pods
(with a uid precondition) kills exactly the incarnation that was judged failed, costs no spec
write and no new controller revision, and keeps the zero-write property of a converged graph;
re-applying the StatefulSets could not force a restart without changing their template.

A group stays *armed* through its own restarts: a group that fails again while recovering
(crash-looping after the restart) is restarted again, with exponential backoff between
restarts, until the restart budget (`budget` restarts within `window` seconds) is spent; then
the group is `Failed` and the DGD reports it. A change of either StatefulSet (new uid or
generation: a spec edit, a node count change, a `spec.restart`) starts the group afresh:
rollouts are not failures, and a new revision gets a new budget.

Bookkeeping lives in memory (`GroupMemory`) and is mirrored into
`status.services.<svc>.groups`, so an operator restart continues the budget from status.
Pods are judged level-based against a baseline (uid and restart count per pod name), so
coalesced watch events cannot hide a restart.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dgd_operator.api.constants import (
    LABEL_COMPONENT,
    LABEL_GROUP_INDEX,
    LABEL_ROLE,
    REASON_GROUP_FAILED,
    ROLE_LEADER,
)

GROUP_STARTING = "Starting"
GROUP_RUNNING = "Running"
GROUP_RESTARTING = "Restarting"
GROUP_FAILED = "Failed"

BUDGET_EXHAUSTED = REASON_GROUP_FAILED
MAIN_CONTAINER = "main"


@dataclass(frozen=True)
class GroupPolicy:
    """Restart budget and backoff (seconds)."""

    budget: int = 5
    window: float = 1800.0
    backoff: float = 10.0
    backoff_cap: float = 300.0

    def delay(self, restarts_in_window: int) -> float:
        """Minimum time between the previous restart and the next one."""
        if restarts_in_window <= 0:
            return 0.0
        return float(min(self.backoff_cap, self.backoff * 2 ** (restarts_in_window - 1)))


@dataclass(frozen=True)
class GroupSpec:
    """One group as the builders render it: its StatefulSets and the pod names they make."""

    service: str
    index: int
    name: str
    workloads: tuple[str, ...]
    pods: tuple[str, ...]


def group_specs(desired: Iterable[Mapping[str, Any]]) -> list[GroupSpec]:
    """Groups of every multinode service, from the desired leader/worker StatefulSets."""
    members: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for obj in desired:
        if obj.get("kind") != "StatefulSet":
            continue
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if (
            LABEL_ROLE not in labels
            or LABEL_GROUP_INDEX not in labels
            or LABEL_COMPONENT not in labels
        ):
            continue
        members.setdefault(
            (str(labels[LABEL_COMPONENT]), int(labels[LABEL_GROUP_INDEX])), []
        ).append(obj)
    specs: list[GroupSpec] = []
    for (service, index), objs in sorted(members.items()):
        objs = sorted(
            objs, key=lambda o: 0 if o["metadata"]["labels"][LABEL_ROLE] == ROLE_LEADER else 1
        )
        pods: list[str] = []
        for obj in objs:
            spec = obj.get("spec") or {}
            start = int((spec.get("ordinals") or {}).get("start", 0))
            replicas = int(spec.get("replicas", 1))
            pods.extend(f"{obj['metadata']['name']}-{i}" for i in range(start, start + replicas))
        leader = str(objs[0]["metadata"]["name"])
        name = leader[: -len("-ldr")] if leader.endswith("-ldr") else leader
        specs.append(
            GroupSpec(
                service, index, name, tuple(str(o["metadata"]["name"]) for o in objs), tuple(pods)
            )
        )
    return specs


@dataclass(frozen=True)
class PodState:
    """What group restarts need to know about one pod."""

    name: str
    uid: str
    phase: str
    ready: bool
    restarts: int
    terminating: bool
    last_error: str

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodState:
        """Summarise a live pod."""
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        statuses = list(status.get("containerStatuses") or [])
        main = [s for s in statuses if s.get("name") == MAIN_CONTAINER] or statuses
        restarts = sum(int(s.get("restartCount") or 0) for s in main)
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        return cls(
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            phase=str(status.get("phase") or "Pending"),
            ready=ready and status.get("phase") == "Running",
            restarts=restarts,
            terminating=bool(meta.get("deletionTimestamp")),
            last_error=_last_error(main, status),
        )


def _last_error(statuses: list[Mapping[str, Any]], status: Mapping[str, Any]) -> str:
    for container in statuses:
        for key in ("lastState", "state"):
            terminated = (container.get(key) or {}).get("terminated")
            if terminated:
                return f"{terminated.get('reason') or 'Terminated'}, exit code {terminated.get('exitCode')}"
    return str(status.get("reason") or "")


def pod_summary(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a pod the watch cache keeps (name, uid, labels, phase, readiness, restarts)."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "labels": dict(meta.get("labels") or {}),
            "deletionTimestamp": meta.get("deletionTimestamp"),
        },
        # The PodGroup the pod joined (gang placement); a group whose pods joined another
        # PodGroup than the desired one is restarted whole (`steps/placement.py`). The node
        # counts the pod as scheduled (`scheduledReplicas`).
        "spec": {
            "schedulingGroup": (pod.get("spec") or {}).get("schedulingGroup"),
            "nodeName": (pod.get("spec") or {}).get("nodeName"),
        },
        "status": {
            "phase": status.get("phase"),
            "reason": status.get("reason"),
            # Ready for restarts; PodScheduled tells why a group waits for the scheduler.
            "conditions": [
                c
                for c in status.get("conditions") or []
                if c.get("type") in ("Ready", "PodScheduled")
            ],
            "containerStatuses": [
                {k: s.get(k) for k in ("name", "restartCount", "state", "lastState")}
                for s in status.get("containerStatuses") or []
            ],
        },
    }


@dataclass
class GroupMemory:
    """What the operator remembers about one group between reconciles."""

    workloads: tuple[tuple[str, int], ...] = ()
    armed: bool = False
    phase: str = GROUP_STARTING
    seen: dict[str, tuple[str, int]] = field(default_factory=dict)
    killed: set[str] = field(default_factory=set)
    restart_times: list[float] = field(default_factory=list)
    restarts: int = 0
    last_reason: str | None = None
    last_time: str | None = None
    failed_reason: str | None = None
    recovered: bool = False
    """Rebuilt from status by a new operator process: pods being deleted then are ours."""

    @classmethod
    def from_status(cls, previous: Mapping[str, Any] | None) -> GroupMemory:
        """Continue from `status.services.<svc>.groups[i]` after an operator restart."""
        memory = cls()
        if not previous:
            return memory
        memory.recovered = True
        memory.phase = str(previous.get("phase") or GROUP_STARTING)
        memory.armed = memory.phase in (GROUP_RUNNING, GROUP_RESTARTING, GROUP_FAILED)
        memory.restarts = int(previous.get("restarts") or 0)
        memory.last_reason = previous.get("lastRestartReason")
        memory.last_time = previous.get("lastRestartTime")
        memory.restart_times = sorted(
            t for t in (_parse_time(s) for s in previous.get("restartTimes") or []) if t is not None
        )
        if memory.phase == GROUP_FAILED:
            memory.failed_reason = previous.get("message") or memory.last_reason
        return memory

    def status(self, spec: GroupSpec) -> dict[str, Any]:
        """This group's entry in `status.services.<svc>.groups`.

        Depends on nothing but the memory (never on the clock), so a quiet group never
        causes a status write.
        """
        entry: dict[str, Any] = {
            "index": spec.index,
            "name": spec.name,
            "phase": self.phase,
            "restarts": self.restarts,
        }
        if self.last_reason:
            entry["lastRestartReason"] = self.last_reason
        if self.last_time:
            entry["lastRestartTime"] = self.last_time
        if self.restart_times:
            entry["restartTimes"] = [_format_time(t) for t in self.restart_times]
        if self.phase == GROUP_FAILED and self.failed_reason:
            entry["message"] = self.failed_reason
        return entry


@dataclass
class GroupDecision:
    """What to do for one group now."""

    delete: list[PodState] = field(default_factory=list)
    reason: str = ""
    """Why the group restarts (with `delete`) or why it failed (`exhausted`)."""
    exhausted: bool = False
    """True when the budget ran out in this step (post one Warning)."""
    requeue_after: float | None = None


def _parse_time(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return (
            datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
            .replace(tzinfo=datetime.UTC)
            .timestamp()
        )
    except ValueError:
        return None


def _format_time(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _window_text(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def _failure(memory: GroupMemory, pods: Mapping[str, PodState]) -> str | None:
    """The first failure of an armed group against its baseline, or None."""
    for name, pod in sorted(pods.items()):
        baseline = memory.seen.get(name)
        if pod.terminating:
            return f"pod {name} deleted"
        if baseline is not None and baseline[0] != pod.uid:
            return f"pod {name} deleted and re-created"
        if baseline is not None and pod.restarts > baseline[1]:
            detail = f" ({pod.last_error})" if pod.last_error else ""
            return f"pod {name} container {MAIN_CONTAINER} restarted{detail}"
        if pod.phase == "Failed":
            detail = f" ({pod.last_error})" if pod.last_error else ""
            return f"pod {name} failed{detail}"
    for name in sorted(set(memory.seen) - set(pods)):
        return f"pod {name} deleted"
    return None


def plan_group(
    memory: GroupMemory,
    spec: GroupSpec,
    live_pods: Iterable[Mapping[str, Any]],
    workloads: tuple[tuple[str, int], ...],
    policy: GroupPolicy,
    now: float,
) -> GroupDecision:
    """Advance `memory` for the current pods of the group and say what to do (see module doc).

    `workloads` is (uid, generation) of the group's StatefulSets as they are live now;
    `now` is epoch seconds.
    """
    if memory.workloads and workloads != memory.workloads:
        # A new revision of the group (spec edit, node count, restart request): start afresh.
        memory.armed, memory.phase, memory.seen = False, GROUP_STARTING, {}
        memory.failed_reason, memory.restart_times, memory.restarts = None, [], 0
        memory.last_reason = memory.last_time = None
    memory.workloads = workloads
    if memory.phase == GROUP_FAILED:
        return GroupDecision()

    states = [PodState.of(pod) for pod in live_pods]
    if memory.recovered:
        memory.killed |= {state.uid for state in states if state.terminating}
        memory.recovered = False
    memory.killed &= {state.uid for state in states}  # forget pods that are gone for good
    wanted = set(spec.pods)
    current = {s.name: s for s in states if s.name in wanted and s.uid not in memory.killed}

    reason = _failure(memory, current) if memory.armed else None
    if reason is None:
        # Pods seen for the first time join the baseline; before the group started, changes
        # are not failures, so the baseline simply follows the pods.
        for name, state in current.items():
            if not memory.armed or name not in memory.seen:
                memory.seen[name] = (state.uid, state.restarts)
        if not memory.armed:
            memory.seen = {name: memory.seen[name] for name in current}
        complete = set(current) == wanted and all(
            s.ready and not s.terminating for s in current.values()
        )
        if complete:
            memory.armed, memory.phase = True, GROUP_RUNNING
        elif not memory.armed:
            memory.phase = GROUP_STARTING
        return GroupDecision()

    memory.restart_times = [t for t in memory.restart_times if now - t < policy.window]
    if len(memory.restart_times) >= policy.budget:
        memory.phase = GROUP_FAILED
        memory.failed_reason = (
            f"{BUDGET_EXHAUSTED}: {spec.name}: {len(memory.restart_times)} restarts in "
            f"{_window_text(policy.window)}; last: {reason}"
        )
        return GroupDecision(reason=memory.failed_reason, exhausted=True)
    if memory.restart_times:
        remaining = memory.restart_times[-1] + policy.delay(len(memory.restart_times)) - now
        if remaining > 0:
            memory.phase = GROUP_RESTARTING
            return GroupDecision(reason=reason, requeue_after=remaining)

    doomed = [s for s in current.values() if not s.terminating]
    memory.killed |= {s.uid for s in current.values()}
    memory.seen = {}
    memory.restart_times.append(now)
    memory.restarts += 1
    memory.last_reason = reason
    memory.last_time = _format_time(now)
    memory.phase = GROUP_RESTARTING
    return GroupDecision(delete=doomed, reason=reason)
