"""Placement: gang scheduling of multinode groups with Kubernetes' own PodGroups.

Two steps around the build and apply of the children:

* `discover_placement` (before `build`) asks API discovery, cached for
  `ControllerState.pod_group_api_recheck` seconds, whether the cluster serves PodGroups. Only
  then do the builders emit a PodGroup per multinode group and make its pods join it: an API
  server without the API silently drops `spec.schedulingGroup`, so it is never sent blindly.
* `placement` (after `children`) deletes the PodGroups of groups that are gone (scale down,
  service removed; kube-controller-manager releases their finalizer once their pods are gone),
  states in the `GangPlacement` condition whether groups are placed all-or-nothing, and tells
  why groups wait for the scheduler (their pods' `PodScheduled=False` message) in `Ready`, and
  restarts the pods of a group that joined another PodGroup than the desired one (a priority
  change makes a new PodGroup: its priority is immutable; or gang placement was just turned on),
  because a rolling update would add them one by one to a gang that never forms.

Graphs with a `packDomain` also get Dynamo's `TopologyLevelsAvailable` condition: whether some
node carries each domain's node label (a label-selected node list, cached per label for
`ControllerState.node_label_recheck` seconds and looked at again as long as one is missing).

PodGroups are not watched (the kind may not exist); the desired ones are read with a GET by the
children step like Secrets, and the graph's PodGroups are listed only when its set of groups
changed since the last listing (or once after an operator start), so a steady graph costs no
list. A group restart deletes pods only: its PodGroup, and the scheduler's record that it was
placed, stay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dgd_operator.api.constants import (
    CONDITION_GANG_PLACEMENT,
    CONDITION_TOPOLOGY_LEVELS,
    EVENT_DELETED,
    EVENT_GROUP_RESTART,
    LABEL_GRAPH,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    POD_GROUP_KIND,
    POD_GROUP_VERSIONS,
    REASON_GANG_OTHER_SCHEDULER,
    REASON_GANG_PLACEMENT_ACTIVE,
    REASON_GANG_UNAVAILABLE,
    REASON_TOPOLOGY_AVAILABLE,
    REASON_TOPOLOGY_NOT_FOUND,
    REASON_TOPOLOGY_PENDING,
    REASON_TOPOLOGY_UNAVAILABLE,
    SCHEDULING_API_GROUP,
)
from dgd_operator.builders.gang import find_pod_group_api
from dgd_operator.builders.placement import PackDomain, pack_domains, uses_default_scheduler
from dgd_operator.controllerkit.kubeapi import ApiError, Manifest
from dgd_operator.reconcile.context import CONTINUE, ReconcileContext, StepResult, step_condition
from dgd_operator.reconcile.groups import GroupSpec, group_specs
from dgd_operator.reconcile.steps.groups import pods_by_group
from dgd_operator.reconcile.sync import child_key, is_owned_by

GANG_UNAVAILABLE_MESSAGE = (
    "multinode groups are placed pod by pod, not all-or-nothing: gang scheduling needs "
    "PodGroups, served by Kubernetes >= 1.37 with the GenericWorkload feature gate and "
    "scheduling.k8s.io/v1beta1 enabled"
)
SCHEDULED_CONDITION = "PodScheduled"
TERMINATING_RECHECK_SECONDS = 2.0
"""How soon to look again at a desired PodGroup that is still being deleted (not watched)."""


async def discover_placement(ctx: ReconcileContext) -> StepResult:
    """Find out (cached) whether the cluster serves PodGroups, for graphs with multinode groups."""
    if not any(spec.is_multinode for spec in ctx.built().spec.services.values()):
        return CONTINUE
    state = ctx.services.state
    if not state.pod_group_api_fresh():
        documents: list[Manifest] = []
        for version in POD_GROUP_VERSIONS:
            document = await ctx.services.client.discover(f"/apis/{SCHEDULING_API_GROUP}/{version}")
            if document is not None:
                documents.append(document)
        state.remember_pod_group_api(find_pod_group_api(documents))
    ctx.pod_group_api = state.pod_group_api
    return CONTINUE


def gang_placement_condition(
    served: bool, groups: int, other_schedulers: Sequence[str], generation: int | None
) -> dict[str, Any]:
    """The `GangPlacement` condition of a graph with `groups` multinode groups.

    `other_schedulers` names the schedulers other than kube-scheduler that place some groups
    (KAI, Volcano): those groups get no PodGroup, their scheduler gangs them its own way.
    """
    elsewhere = (
        f"; groups of scheduler(s) {', '.join(sorted(set(other_schedulers)))} are left to it"
    )
    if other_schedulers and len(other_schedulers) == groups:
        status, reason = "False", REASON_GANG_OTHER_SCHEDULER
        message = f"no Kubernetes PodGroups{elsewhere}"
    elif served:
        status, reason = "True", REASON_GANG_PLACEMENT_ACTIVE
        placed = groups - len(other_schedulers)
        message = f"{placed} multinode group(s) placed all-or-nothing through PodGroups"
        if other_schedulers:
            message += elsewhere
    else:
        status, reason, message = "False", REASON_GANG_UNAVAILABLE, GANG_UNAVAILABLE_MESSAGE
    return step_condition(CONDITION_GANG_PLACEMENT, status, reason, message, generation)


def other_schedulers(desired: Sequence[Mapping[str, Any]], specs: Sequence[GroupSpec]) -> list[str]:
    """The non-default scheduler of each group placed by one (from its leader's pod template)."""
    leaders = {
        str(obj["metadata"]["name"]): obj for obj in desired if obj.get("kind") == "StatefulSet"
    }
    found: list[str] = []
    for spec in specs:
        leader = leaders.get(spec.workloads[0]) or {}
        pod = ((leader.get("spec") or {}).get("template") or {}).get("spec") or {}
        if not uses_default_scheduler(pod):
            found.append(str(pod["schedulerName"]))
    return found


def _unschedulable_message(pod: Mapping[str, Any]) -> str | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") == SCHEDULED_CONDITION
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return str(condition.get("message") or "Unschedulable")
    return None


def waiting_groups(
    specs: Sequence[GroupSpec], pods: Mapping[tuple[str, int], Sequence[Mapping[str, Any]]]
) -> list[str]:
    """Why groups wait for the scheduler: one line per group with unschedulable pods.

    The message is the scheduler's own, from the group's first such pod by name (the gang
    plugin writes the same verdict on every pod of a group it cannot place whole).
    """
    lines: list[str] = []
    for spec in specs:
        waiting = sorted(
            (str((pod.get("metadata") or {}).get("name")), message)
            for pod in pods.get((spec.service, spec.index), [])
            if (message := _unschedulable_message(pod)) is not None
        )
        if waiting:
            lines.append(
                f"group {spec.name}: {len(waiting)}/{len(spec.pods)} pods cannot be scheduled: "
                f"{waiting[0][1]}"
            )
    return lines


async def prune_pod_groups(ctx: ReconcileContext, wanted: frozenset[str]) -> None:
    """Delete the graph's PodGroups that no desired group names (listed only on a change)."""
    memory = ctx.memory
    api = ctx.pod_group_api
    if api is None or memory.pod_groups == wanted or (memory.pod_groups is None and not wanted):
        return
    selector = f"{LABEL_GRAPH}={ctx.name},{LABEL_MANAGED_BY}={MANAGED_BY}"
    client = ctx.services.client
    live = await client.list(
        api.api_version, POD_GROUP_KIND, ctx.namespace, label_selector=selector
    )
    for pod_group in live:
        meta = pod_group.get("metadata") or {}
        if meta.get("name") in wanted or not is_owned_by(pod_group, ctx.uid):
            continue
        ctx.services.state.child_deleted(ctx.namespace, child_key(pod_group))
        if await client.delete(
            api.api_version, POD_GROUP_KIND, ctx.namespace, str(meta["name"]), uid=meta.get("uid")
        ):
            ctx.outcome.deleted += 1
            ctx.notices.append((EVENT_DELETED, f"deleted {POD_GROUP_KIND}/{meta['name']}"))
    memory.pod_groups = wanted


def desired_pod_groups(
    desired: Sequence[Mapping[str, Any]], specs: Sequence[GroupSpec]
) -> dict[tuple[str, int], str]:
    """(service, group index) -> the PodGroup the group's pods must join (groups with one)."""
    templates = {
        str(obj["metadata"]["name"]): ((obj.get("spec") or {}).get("template") or {}).get("spec")
        or {}
        for obj in desired
        if obj.get("kind") == "StatefulSet"
    }
    wanted: dict[tuple[str, int], str] = {}
    for spec in specs:
        joined = (templates.get(spec.workloads[0]) or {}).get("schedulingGroup") or {}
        if joined.get("podGroupName"):
            wanted[(spec.service, spec.index)] = str(joined["podGroupName"])
    return wanted


def strays(
    wanted: Mapping[tuple[str, int], str],
    pods: Mapping[tuple[str, int], Sequence[Mapping[str, Any]]],
) -> list[Mapping[str, Any]]:
    """Live pods of gang groups that joined another PodGroup than their group's (or none).

    A StatefulSet rolls pods one by one: a new pod in a PodGroup that was never placed waits for
    the whole gang, which the rollout never creates. Such groups restart whole instead: the
    StatefulSets recreate the deleted pods at their new revision, all at once.
    """
    found: list[Mapping[str, Any]] = []
    for ident, name in sorted(wanted.items()):
        for pod in pods.get(ident, []):
            meta = pod.get("metadata") or {}
            joined = ((pod.get("spec") or {}).get("schedulingGroup") or {}).get("podGroupName")
            if joined != name and not meta.get("deletionTimestamp"):
                found.append(pod)
    return found


async def rejoin_groups(
    ctx: ReconcileContext,
    specs: Sequence[GroupSpec],
    pods: Mapping[tuple[str, int], Sequence[Mapping[str, Any]]],
) -> None:
    """Delete the pods that joined a stale PodGroup (a priority change, gang placement newly on)."""
    doomed = strays(desired_pod_groups(ctx.desired, specs), pods)
    for pod in doomed:
        meta = pod["metadata"]
        await ctx.services.client.delete(
            "v1", "Pod", ctx.namespace, str(meta["name"]), uid=meta.get("uid")
        )
    if doomed:
        names = ", ".join(sorted(str(p["metadata"]["name"]) for p in doomed))
        await ctx.event(
            "Normal",
            EVENT_GROUP_RESTART,
            f"restarting pods that joined a previous PodGroup, so their group is placed whole: {names}",
        )


def terminating_pod_groups(ctx: ReconcileContext) -> list[Mapping[str, Any]]:
    """Desired PodGroups found being deleted (a group removed and added back before its old
    PodGroup was released): their records are forgotten so they are created once gone."""
    found: list[Mapping[str, Any]] = []
    for obj in ctx.desired:
        if obj.get("kind") != POD_GROUP_KIND:
            continue
        live = ctx.live.get(child_key(obj))
        if live is not None and (live.get("metadata") or {}).get("deletionTimestamp"):
            ctx.services.state.child_deleted(ctx.namespace, child_key(obj))
            found.append(live)
    return found


def topology_levels_condition(
    domains: Sequence[PackDomain],
    presence: Mapping[str, tuple[bool | None, str]],
    generation: int | None,
) -> dict[str, Any]:
    """Dynamo's `TopologyLevelsAvailable` condition of a graph that packs into `domains`.

    `presence` maps each known node label key to (some node carries it?, why unknown). A domain
    without a node label is a missing definition; a label no node carries leaves the pods it
    packs unschedulable (a required affinity needs the label on the node).
    """
    unknown = [d for d in domains if d.key is None]
    missing = [d for d in domains if d.key is not None and presence[d.key][0] is False]
    unsure = [d for d in domains if d.key is not None and presence[d.key][0] is None]

    def named(found: Sequence[PackDomain]) -> str:
        return ", ".join(f"{d.domain!r} ({d.path})" for d in found)

    if unknown:
        status, reason = "False", REASON_TOPOLOGY_NOT_FOUND
        message = (
            f"no node label is known for topology domain(s) {named(unknown)}: those "
            "constraints are not acted on; map them in the operator setting "
            "DGD_TOPOLOGY_DOMAIN_KEYS"
        )
    elif missing:
        status, reason = "False", REASON_TOPOLOGY_UNAVAILABLE
        labels = ", ".join(sorted({str(d.key) for d in missing}))
        message = (
            f"no node carries label(s) {labels} of topology domain(s) {named(missing)}: "
            "the pods packed by them cannot be scheduled until nodes are labelled"
        )
    elif unsure:
        status, reason = "Unknown", REASON_TOPOLOGY_PENDING
        detail = presence[str(unsure[0].key)][1]
        message = f"cannot tell whether nodes carry the topology labels: {detail}"
    else:
        status, reason = "True", REASON_TOPOLOGY_AVAILABLE
        used = sorted({f"{d.domain} ({d.key})" for d in domains})
        message = "nodes carry the label of every topology domain used: " + ", ".join(used)
    return step_condition(CONDITION_TOPOLOGY_LEVELS, status, reason, message, generation)


async def node_label_presence(ctx: ReconcileContext, key: str) -> tuple[bool | None, str]:
    """Whether some node carries label `key` (cached; None with the reason when not allowed)."""
    state = ctx.services.state
    check = state.node_label(key)
    if check is None:
        try:
            nodes = await ctx.services.client.list("v1", "Node", None, label_selector=key)
        except ApiError as exc:
            if exc.status not in (401, 403, 404):
                raise
            state.remember_node_label(key, None, f"listing nodes was refused: {exc}")
        else:
            state.remember_node_label(key, bool(nodes))
        check = state.node_label(key)
        assert check is not None
    return check.present, check.detail


async def topology_levels(ctx: ReconcileContext) -> float | None:
    """Add `TopologyLevelsAvailable` for a graph with pack domains; when to look again."""
    domains = pack_domains(ctx.built(), ctx.services.options.topology_domain_keys)
    if not domains:
        return None
    presence = {
        key: await node_label_presence(ctx, key)
        for key in sorted({d.key for d in domains if d.key is not None})
    }
    condition = topology_levels_condition(domains, presence, ctx.generation)
    ctx.placement.append(condition)
    if condition["status"] == "True" or condition["reason"] == REASON_TOPOLOGY_NOT_FOUND:
        return None  # settled until the spec or the operator's settings change
    return ctx.services.state.node_label_recheck


async def placement(ctx: ReconcileContext) -> StepResult:
    """Prune PodGroups of removed groups; report gang placement, topology labels and groups
    that wait."""
    specs = group_specs(ctx.desired)
    wanted = frozenset(
        str(obj["metadata"]["name"]) for obj in ctx.desired if obj.get("kind") == POD_GROUP_KIND
    )
    await prune_pod_groups(ctx, wanted)
    requeues = [await topology_levels(ctx)]
    if terminating_pod_groups(ctx):
        requeues.append(TERMINATING_RECHECK_SECONDS)
    pending = [after for after in requeues if after is not None]
    requeue = min(pending) if pending else None
    if specs:
        ctx.placement.append(
            gang_placement_condition(
                ctx.pod_group_api is not None,
                len(specs),
                other_schedulers(ctx.desired, specs),
                ctx.generation,
            )
        )
        pods = pods_by_group(ctx.services.view.group_pods(ctx.key))
        await rejoin_groups(ctx, specs, pods)
        ctx.placement_waits = waiting_groups(specs, pods)
    return StepResult(requeue_after=requeue)
