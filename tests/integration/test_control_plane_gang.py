"""Gang placement on the real kube-scheduler (Kubernetes 1.37 PodGroup API + GangScheduling).

Pods are made here straight from `builders/gang.py`'s output; the operator's wiring comes later.
Each test gets its own simulated nodes (the ``pool_nodes`` fixture), tainted and labelled for its
namespace, so other tests' pods never land on them and its own pods land nowhere else: capacity
is exactly what the test says ("room for 3" means three 8-GPU nodes).

"Nothing binds" is never a sleep: a test waits until kube-scheduler has recorded its verdict on
every pod (PodScheduled=False, reason Unschedulable) and on the PodGroup, then checks that no pod
has a node.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import wait_for
from tests.integration.node_pools import POOL_KEY, AddNodes

from dgd_operator.builders.gang import (
    GangGroup,
    PodGroupApi,
    apply_gang_fields,
    build_pod_group,
    gang_pod_fields,
    group_member_labels,
    pod_group_name,
)
from dgd_operator.dev.binaries import KubeBinaries
from dgd_operator.dev.controlplane import ControlPlane
from dgd_operator.dev.kubelet import GPU_RESOURCE
from dgd_operator.dev.rest import ApiError, JsonDict
from dgd_operator.dev.scheduling import discover_pod_group_api, pod_group_scheduled_condition

pytestmark = pytest.mark.integration

RACK_KEY = "dgd.dev/test-rack"


def _version_at_least(version: str, minor: int) -> bool:
    parts = version.removeprefix("v").split(".")
    try:
        return int(parts[0]) > 1 or (int(parts[0]) == 1 and int(parts[1]) >= minor)
    except (IndexError, ValueError):
        return False


@pytest.fixture()
def pod_group_api(control_plane: ControlPlane, kube_binaries: KubeBinaries) -> PodGroupApi:
    """The PodGroup API of the test cluster; binaries older than 1.37 have none (skip)."""
    if control_plane.pod_group_api is None:
        assert not _version_at_least(kube_binaries.version, 37), (
            f"Kubernetes {kube_binaries.version} must serve the PodGroup API in the dev cluster"
        )
        pytest.skip(f"Kubernetes {kube_binaries.version} has no PodGroup API (needs >= 1.37)")
    return control_plane.pod_group_api


def _group(name: str, nodes: int, **kwargs: Any) -> GangGroup:
    return GangGroup(
        name=pod_group_name(name, "Worker", 0),
        node_count=nodes,
        member_labels=group_member_labels(name, "Worker", 0),
        **kwargs,
    )


def _create_gang(
    control_plane: ControlPlane,
    namespace: str,
    group: GangGroup,
    api: PodGroupApi,
    gpus_per_pod: int = 8,
) -> list[str]:
    """The PodGroup and its ``node_count`` pods (one whole GPU node each); returns pod names."""
    rest = control_plane.rest
    rest.post(api.collection_path(namespace), build_pod_group(group, api))
    fields = gang_pod_fields(group, api)
    names = []
    for index in range(group.node_count):
        spec = {
            "containers": [
                {
                    "name": "engine",
                    "image": "example.com/engine:1",
                    "resources": {"limits": {GPU_RESOURCE: str(gpus_per_pod)}},
                }
            ],
            "nodeSelector": {POOL_KEY: namespace},
            "tolerations": [
                {"key": POOL_KEY, "operator": "Equal", "value": namespace, "effect": "NoSchedule"}
            ],
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{group.name}-{index}", "labels": dict(group.member_labels)},
            "spec": apply_gang_fields(spec, fields),
        }
        created = rest.post(f"/api/v1/namespaces/{namespace}/pods", pod)
        # The apiserver drops spec.schedulingGroup silently when its gate is off.
        assert created["spec"].get("schedulingGroup") == {"podGroupName": group.name}
        names.append(created["metadata"]["name"])
    return names


def _pods(control_plane: ControlPlane, namespace: str, names: list[str]) -> list[JsonDict]:
    return [control_plane.rest.get(f"/api/v1/namespaces/{namespace}/pods/{name}") for name in names]


def _scheduled_condition(pod: JsonDict) -> JsonDict:
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled":
            return dict(condition)
    return {}


def _all_refused(
    control_plane: ControlPlane, namespace: str, names: list[str]
) -> list[JsonDict] | None:
    """The pods, once the scheduler has marked every one Unschedulable; else None."""
    pods = _pods(control_plane, namespace, names)
    refused = all(
        _scheduled_condition(p).get("status") == "False"
        and _scheduled_condition(p).get("reason") == "Unschedulable"
        for p in pods
    )
    return pods if refused else None


def _all_running(
    control_plane: ControlPlane, namespace: str, names: list[str]
) -> list[JsonDict] | None:
    pods = _pods(control_plane, namespace, names)
    return pods if all(p.get("status", {}).get("phase") == "Running" for p in pods) else None


def _pod_group(
    control_plane: ControlPlane, namespace: str, api: PodGroupApi, name: str
) -> JsonDict:
    return control_plane.rest.get(f"{api.collection_path(namespace)}/{name}")


def _group_verdict(
    control_plane: ControlPlane, namespace: str, api: PodGroupApi, name: str, status: str
) -> JsonDict | None:
    """The PodGroup's PodGroupInitiallyScheduled condition once it has ``status``."""
    condition = pod_group_scheduled_condition(_pod_group(control_plane, namespace, api, name))
    return condition if condition and condition.get("status") == status else None


def test_dev_cluster_serves_pod_groups_through_discovery(
    control_plane: ControlPlane, pod_group_api: PodGroupApi
) -> None:
    assert discover_pod_group_api(control_plane.rest) == pod_group_api
    assert pod_group_api.api_version == "scheduling.k8s.io/v1beta1"


def test_gang_binds_nothing_without_room_for_all_then_everything_at_once(
    control_plane: ControlPlane, namespace: str, pod_group_api: PodGroupApi, pool_nodes: AddNodes
) -> None:
    pool_nodes(3)  # room for 3 of the 4 pods
    group = _group("big", 4)
    names = _create_gang(control_plane, namespace, group, pod_group_api)

    pods = wait_for(
        lambda: _all_refused(control_plane, namespace, names),
        timeout=60,
        description="the scheduler to mark all 4 pods of the gang Unschedulable",
    )
    assert [p["spec"].get("nodeName") for p in pods] == [None] * 4, "no pod of the gang may bind"
    assert {p["status"]["phase"] for p in pods} == {"Pending"}
    assert all(_scheduled_condition(p).get("message") for p in pods), "the reason must be readable"
    verdict = wait_for(
        lambda: _group_verdict(control_plane, namespace, pod_group_api, group.name, "False"),
        timeout=60,
        description="the scheduler's PodGroupInitiallyScheduled=False on the PodGroup",
    )
    assert verdict["reason"] == "Unschedulable"
    assert "minCount (4)" in verdict["message"]
    # Still nothing bound after the scheduler's verdict on the whole group.
    assert all(not p["spec"].get("nodeName") for p in _pods(control_plane, namespace, names))

    pool_nodes(1)  # the fourth node
    pods = wait_for(
        lambda: _all_running(control_plane, namespace, names),
        timeout=90,
        description="all 4 pods of the gang Running once a fourth node exists",
    )
    assert len({p["spec"]["nodeName"] for p in pods}) == 4
    wait_for(
        lambda: _group_verdict(control_plane, namespace, pod_group_api, group.name, "True"),
        timeout=30,
        description="PodGroupInitiallyScheduled=True",
    )


def test_two_gangs_competing_for_room_for_one_never_split(
    control_plane: ControlPlane, namespace: str, pod_group_api: PodGroupApi, pool_nodes: AddNodes
) -> None:
    pool_nodes(4)  # room for exactly one 4-pod gang
    gangs = {
        name: _create_gang(control_plane, namespace, _group(name, 4), pod_group_api)
        for name in ("first", "second")
    }

    def one_whole_one_waiting() -> tuple[str, str] | None:
        running = [g for g, names in gangs.items() if _all_running(control_plane, namespace, names)]
        refused = [g for g, names in gangs.items() if _all_refused(control_plane, namespace, names)]
        if len(running) == 1 and len(refused) == 1 and running != refused:
            return running[0], refused[0]
        return None

    winner, loser = wait_for(
        one_whole_one_waiting,
        timeout=90,
        description="one gang Running whole and the other marked Unschedulable whole",
    )
    loser_group = _group(loser, 4).name
    wait_for(
        lambda: _group_verdict(control_plane, namespace, pod_group_api, loser_group, "False"),
        timeout=60,
        description=f"the scheduler's verdict on the waiting gang {loser}",
    )
    bound = {
        g: [p["spec"].get("nodeName") for p in _pods(control_plane, namespace, names)]
        for g, names in gangs.items()
    }
    assert all(bound[winner]) and len(set(bound[winner])) == 4
    assert bound[loser] == [None] * 4, f"the waiting gang must not be split: {bound}"


def test_packed_gangs_land_in_one_rack_each(
    control_plane: ControlPlane, namespace: str, pod_group_api: PodGroupApi, pool_nodes: AddNodes
) -> None:
    plans = pool_nodes(6, spreads={RACK_KEY: ["a", "b"]})  # two racks of 3 nodes
    rack_of = {plan.name: plan.labels[RACK_KEY] for plan in plans}
    gangs = {
        name: _create_gang(
            control_plane,
            namespace,
            _group(name, 3, pack_domain_key=RACK_KEY),
            pod_group_api,
        )
        for name in ("left", "right")
    }
    racks: dict[str, set[str]] = {}
    for name, pod_names in gangs.items():
        pods = wait_for(
            functools.partial(_all_running, control_plane, namespace, pod_names),
            timeout=90,
            description=f"gang {name} Running",
        )
        racks[name] = {rack_of[p["spec"]["nodeName"]] for p in pods}
    assert all(len(r) == 1 for r in racks.values()), f"each gang must stay in one rack: {racks}"
    assert racks["left"] != racks["right"]


def test_without_the_gate_the_api_is_not_discovered_and_pods_lose_their_group(
    kube_binaries: KubeBinaries, tmp_path: Path
) -> None:
    # A second, apiserver-only cluster with gang scheduling off (as on clusters older than 1.37
    # or without the GenericWorkload gate).
    bins = dataclasses.replace(kube_binaries, controller_manager=None, scheduler=None)
    plane = ControlPlane(
        tmp_path / "no-gang",
        binaries=bins,
        kubelet="none",
        crds=False,
        gang_scheduling=False,
        nodes=0,
    )
    try:
        plane.start()
        assert plane.pod_group_api is None
        assert discover_pod_group_api(plane.rest) is None
        with pytest.raises(ApiError) as missing:
            plane.rest.get("/apis/scheduling.k8s.io/v1beta1/namespaces/default/podgroups")
        assert missing.value.status == 404
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "member"},
            "spec": {
                "containers": [{"name": "main", "image": "example.com/app:1"}],
                "schedulingGroup": {"podGroupName": "some-group"},
            },
        }
        created = plane.rest.post("/api/v1/namespaces/default/pods", pod, dryRun="All")
        # Silently dropped, not refused: the operator must not create such pods expecting a gang.
        assert "schedulingGroup" not in created["spec"]
    finally:
        leftovers = plane.stop()
        plane.remove_data()
    assert not leftovers


@pytest.fixture()
def priority_classes(control_plane: ControlPlane, namespace: str) -> Iterator[dict[str, str]]:
    """Two PriorityClasses for this test: ``low`` (1000) and ``high`` (100000); names only."""
    names = {"low": f"{namespace}-low", "high": f"{namespace}-high"}
    for level, value in (("low", 1000), ("high", 100000)):
        control_plane.rest.post(
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            {"metadata": {"name": names[level]}, "value": value},
        )
    yield names
    for name in names.values():
        control_plane.rest.delete(f"/apis/scheduling.k8s.io/v1/priorityclasses/{name}")


def test_high_priority_gang_preempts_a_low_priority_gang_whole(
    control_plane: ControlPlane,
    namespace: str,
    pod_group_api: PodGroupApi,
    pool_nodes: AddNodes,
    priority_classes: dict[str, str],
) -> None:
    pool_nodes(4)  # room for one 4-pod gang
    low = _group("low", 4, priority_class_name=priority_classes["low"])
    low_pods = _create_gang(control_plane, namespace, low, pod_group_api)
    wait_for(
        lambda: _all_running(control_plane, namespace, low_pods),
        timeout=90,
        description="the low-priority gang Running",
    )
    high = _group("high", 4, priority_class_name=priority_classes["high"])
    high_pods = _create_gang(control_plane, namespace, high, pod_group_api)
    pods = wait_for(
        lambda: _all_running(control_plane, namespace, high_pods),
        timeout=120,
        description="the high-priority gang Running after preempting the low one",
    )
    assert len({p["spec"]["nodeName"] for p in pods}) == 4

    def low_pods_left() -> list[str]:
        found = []
        for name in low_pods:
            try:
                pod = control_plane.rest.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
            except ApiError as exc:
                if exc.status == 404:
                    continue
                raise
            if pod["spec"].get("nodeName") and not pod["metadata"].get("deletionTimestamp"):
                found.append(name)
        return found

    assert low_pods_left() == [], "no pod of the preempted gang may keep running"
