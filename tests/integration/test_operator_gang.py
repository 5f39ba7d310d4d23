"""Gang placement through the operator, on the real kube-scheduler (Kubernetes 1.37 PodGroups).

The operator gives every multinode group a PodGroup (gang policy, `minCount` = node count) and
makes the group's pods join it; kube-scheduler then binds a group whole or not at all. Each test
gets its own simulated 8-GPU nodes (`pool_nodes`: labelled and tainted for its namespace), and
its graphs' pods select and tolerate exactly those nodes, so capacity is what the test says.

"Nothing binds" is never a sleep: the tests wait for the DGD's status to carry the scheduler's
verdict (its pods' PodScheduled=False message) and then check that no pod has a node.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import wait_for
from tests.integration.node_pools import POOL_KEY, AddNodes
from tests.integration.operator_harness import dgd_path, running_operator, settled

from dgd_operator.builders.gang import PodGroupApi
from dgd_operator.dev.binaries import KubeBinaries
from dgd_operator.dev.controlplane import ControlPlane
from dgd_operator.dev.rest import KubeRest

pytestmark = pytest.mark.integration

GROUP_SELECTOR = "nvidia.com/dynamo-graph-deployment-name={name},instance-id"
Doc = dict[str, Any]


@pytest.fixture()
def pod_group_api(control_plane: ControlPlane) -> PodGroupApi:
    """The test cluster's PodGroup API (the 1.37 dev cluster serves it; older binaries skip)."""
    if control_plane.pod_group_api is None:
        pytest.skip("this control plane does not serve PodGroups (needs Kubernetes >= 1.37)")
    return control_plane.pod_group_api


@pytest.fixture()
def operator(namespace: str) -> Iterator[None]:
    """The operator, watching the test's namespace."""
    with running_operator(namespace):
        yield


def _graph(name: str, namespace: str, *, nodes: int, replicas: int = 1) -> Doc:
    """One vLLM worker service: `replicas` groups of `nodes` pods x 8 GPUs, on the test's pool."""
    return {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": name},
        "spec": {
            "backendFramework": "vllm",
            "services": {
                "worker": {
                    "componentType": "worker",
                    "replicas": replicas,
                    "multinode": {"nodeCount": nodes},
                    "resources": {"limits": {"gpu": "8"}},
                    "extraPodSpec": {
                        "nodeSelector": {POOL_KEY: namespace},
                        "tolerations": [
                            {
                                "key": POOL_KEY,
                                "operator": "Equal",
                                "value": namespace,
                                "effect": "NoSchedule",
                            }
                        ],
                        "mainContainer": {
                            "image": "example.com/vllm-runtime:1",
                            "command": ["python3", "-m", "dynamo.vllm"],
                            "args": [
                                "--model",
                                "m",
                                "--tensor-parallel-size",
                                "8",
                                "--pipeline-parallel-size",
                                str(nodes),
                            ],
                        },
                    },
                }
            },
        },
    }


def _pods(rest: KubeRest, namespace: str, name: str) -> list[Doc]:
    items = rest.get(
        f"/api/v1/namespaces/{namespace}/pods", labelSelector=GROUP_SELECTOR.format(name=name)
    ).get("items", [])
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _pod_groups(rest: KubeRest, namespace: str, api: PodGroupApi, name: str) -> dict[str, Doc]:
    """The graph's live PodGroups (being deleted ones left out), by name."""
    items = rest.get(
        api.collection_path(namespace),
        labelSelector=f"nvidia.com/dynamo-graph-deployment-name={name}",
    ).get("items", [])
    return {p["metadata"]["name"]: p for p in items if not p["metadata"].get("deletionTimestamp")}


def _all_pod_groups(rest: KubeRest, namespace: str, api: PodGroupApi, name: str) -> set[str]:
    items = rest.get(
        api.collection_path(namespace),
        labelSelector=f"nvidia.com/dynamo-graph-deployment-name={name}",
    ).get("items", [])
    return {p["metadata"]["name"] for p in items}


def _condition(rest: KubeRest, namespace: str, name: str, kind: str) -> Doc:
    status = rest.get(dgd_path(namespace, name)).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def _waiting_message(rest: KubeRest, namespace: str, name: str, pods: int) -> str | None:
    """The DGD's Ready message once it says that all `pods` of its group cannot be scheduled."""
    message = str(_condition(rest, namespace, name, "Ready").get("message") or "")
    return message if f"{pods}/{pods} pods cannot be scheduled" in message else None


def _bound(pods: list[Doc]) -> list[str]:
    return [p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")]


def test_a_group_binds_nothing_without_room_for_all_and_the_status_says_why(
    control_plane: ControlPlane,
    namespace: str,
    pod_group_api: PodGroupApi,
    pool_nodes: AddNodes,
    operator: None,
) -> None:
    rest = control_plane.rest
    pool_nodes(3)  # room for 3 of the group's 4 pods
    rest.post(dgd_path(namespace), _graph("big", namespace, nodes=4))

    message = wait_for(
        lambda: _waiting_message(rest, namespace, "big", 4),
        timeout=90,
        interval=0.5,
        description="the DGD's Ready message to carry the scheduler's verdict on all 4 pods",
    )
    assert "group big-worker-0" in message
    pods = _pods(rest, namespace, "big")
    assert len(pods) == 4 and _bound(pods) == [], "no pod of the group may bind"
    assert {p["spec"]["schedulingGroup"]["podGroupName"] for p in pods} == {"big-worker-0"}
    groups = _pod_groups(rest, namespace, pod_group_api, "big")
    assert list(groups) == ["big-worker-0"]
    assert groups["big-worker-0"]["spec"]["schedulingPolicy"] == {"gang": {"minCount": 4}}
    gang = _condition(rest, namespace, "big", "GangPlacement")
    assert gang["status"] == "True" and gang["reason"] == "PodGroupsCreated"

    pool_nodes(1)  # the fourth node: the whole group binds
    wait_for(
        lambda: settled(rest, namespace, "big"),
        timeout=120,
        interval=0.5,
        description="the DGD successful once a fourth node exists",
    )
    assert len(set(_bound(_pods(rest, namespace, "big")))) == 4


def test_two_graphs_competing_for_room_for_one_group_one_runs_whole(
    control_plane: ControlPlane,
    namespace: str,
    pod_group_api: PodGroupApi,
    pool_nodes: AddNodes,
    operator: None,
) -> None:
    rest = control_plane.rest
    pool_nodes(2)  # room for one 2-node group
    for name in ("left", "right"):
        rest.post(dgd_path(namespace), _graph(name, namespace, nodes=2))

    def decided() -> tuple[str, str] | None:
        for winner, loser in (("left", "right"), ("right", "left")):
            if settled(rest, namespace, winner) and _waiting_message(rest, namespace, loser, 2):
                return winner, loser
        return None

    winner, loser = wait_for(
        decided, timeout=120, interval=0.5, description="one graph running, the other waiting"
    )
    assert len(set(_bound(_pods(rest, namespace, winner)))) == 2
    assert _bound(_pods(rest, namespace, loser)) == [], "the waiting graph holds no node"


def test_scale_up_restart_and_scale_down_keep_pod_groups_in_step(
    control_plane: ControlPlane,
    namespace: str,
    pod_group_api: PodGroupApi,
    pool_nodes: AddNodes,
    operator: None,
) -> None:
    rest = control_plane.rest
    pool_nodes(4)
    rest.post(dgd_path(namespace), _graph("grow", namespace, nodes=2))
    wait_for(
        lambda: settled(rest, namespace, "grow"), timeout=120, interval=0.5, description="1 group"
    )
    assert set(_pod_groups(rest, namespace, pod_group_api, "grow")) == {"grow-worker-0"}

    # Scale up by one group.
    rest.patch(dgd_path(namespace, "grow"), {"spec": {"services": {"worker": {"replicas": 2}}}})
    wait_for(
        lambda: (
            settled(rest, namespace, "grow") and len(_bound(_pods(rest, namespace, "grow"))) == 4
        ),
        timeout=120,
        interval=0.5,
        description="2 groups running",
    )
    groups = _pod_groups(rest, namespace, pod_group_api, "grow")
    assert set(groups) == {"grow-worker-0", "grow-worker-1"}
    assert {g["spec"]["schedulingPolicy"]["gang"]["minCount"] for g in groups.values()} == {2}
    first_uid = groups["grow-worker-0"]["metadata"]["uid"]

    # A group restart (a rank deleted) recreates the group's pods; its PodGroup stays.
    victim = next(
        p for p in _pods(rest, namespace, "grow") if p["metadata"]["name"] == "grow-worker-0-wkr-1"
    )
    rest.delete(f"/api/v1/namespaces/{namespace}/pods/{victim['metadata']['name']}")

    def restarted_and_running() -> bool:
        status = rest.get(dgd_path(namespace, "grow")).get("status") or {}
        entries = (status.get("services") or {}).get("worker", {}).get("groups") or []
        restarted = any(g.get("index") == 0 and g.get("restarts", 0) >= 1 for g in entries)
        return restarted and settled(rest, namespace, "grow") is not None

    wait_for(restarted_and_running, timeout=120, interval=0.5, description="group 0 restarted")
    groups = _pod_groups(rest, namespace, pod_group_api, "grow")
    assert set(groups) == {"grow-worker-0", "grow-worker-1"}
    assert groups["grow-worker-0"]["metadata"]["uid"] == first_uid

    # Scale down: the removed group's PodGroup goes once its pods are gone (no orphan).
    rest.patch(dgd_path(namespace, "grow"), {"spec": {"services": {"worker": {"replicas": 1}}}})
    wait_for(
        lambda: _all_pod_groups(rest, namespace, pod_group_api, "grow") == {"grow-worker-0"},
        timeout=120,
        interval=0.5,
        description="only group 0's PodGroup left",
    )


def test_a_template_change_rolls_a_running_gang_group_to_the_new_revision(
    control_plane: ControlPlane,
    namespace: str,
    pod_group_api: PodGroupApi,
    pool_nodes: AddNodes,
    operator: None,
) -> None:
    """A StatefulSet rolling update replaces a group's pods one by one; each new pod joins a
    PodGroup that was placed already, so it must not wait for a whole new gang."""
    rest = control_plane.rest
    pool_nodes(2)
    doc = _graph("roll", namespace, nodes=2)
    rest.post(dgd_path(namespace), doc)
    wait_for(
        lambda: settled(rest, namespace, "roll"), timeout=120, interval=0.5, description="running"
    )
    image = "example.com/vllm-runtime:2"
    patch = {
        "spec": {"services": {"worker": {"extraPodSpec": {"mainContainer": {"image": image}}}}}
    }
    rest.patch(dgd_path(namespace, "roll"), patch)

    def rolled() -> bool:
        pods = _pods(rest, namespace, "roll")
        images = {c["image"] for p in pods for c in p["spec"]["containers"] if c["name"] == "main"}
        return len(pods) == 2 and images == {image} and settled(rest, namespace, "roll") is not None

    wait_for(rolled, timeout=180, interval=0.5, description="both pods on the new image, DGD ready")
    assert set(_pod_groups(rest, namespace, pod_group_api, "roll")) == {"roll-worker-0"}


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


def test_a_high_priority_graph_preempts_a_low_priority_group_whole(
    control_plane: ControlPlane,
    namespace: str,
    pod_group_api: PodGroupApi,
    pool_nodes: AddNodes,
    priority_classes: dict[str, str],
    operator: None,
) -> None:
    rest = control_plane.rest
    pool_nodes(2)  # room for one 2-node group
    low = _graph("low", namespace, nodes=2)
    low["spec"]["priorityClassName"] = priority_classes["low"]
    rest.post(dgd_path(namespace), low)
    wait_for(
        lambda: settled(rest, namespace, "low"),
        timeout=120,
        interval=0.5,
        description="low running",
    )

    high = _graph("high", namespace, nodes=2)
    high["spec"]["priorityClassName"] = priority_classes["high"]
    rest.post(dgd_path(namespace), high)
    wait_for(
        lambda: settled(rest, namespace, "high") and _waiting_message(rest, namespace, "low", 2),
        timeout=180,
        interval=0.5,
        description="the high graph running, the low one waiting whole",
    )
    assert len(set(_bound(_pods(rest, namespace, "high")))) == 2
    assert _bound(_pods(rest, namespace, "low")) == [], "no pod of the preempted group may run"
    (group,) = _pod_groups(rest, namespace, pod_group_api, "high").values()
    assert group["spec"]["priorityClassName"] == priority_classes["high"]


def test_without_the_pod_group_api_graphs_reconcile_and_the_status_explains(
    kube_binaries: KubeBinaries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second, apiserver-only cluster without gang scheduling (as before Kubernetes 1.37):
    the operator builds the groups without PodGroups and says why in `GangPlacement`."""
    bins = dataclasses.replace(kube_binaries, controller_manager=None, scheduler=None)
    plane = ControlPlane(
        tmp_path / "no-gang",
        binaries=bins,
        kubelet="none",
        gang_scheduling=False,
        nodes=0,
        kubeconfig=tmp_path / "no-gang.kubeconfig",
    )
    try:
        plane.start()
        assert plane.pod_group_api is None
        rest = plane.rest
        namespace = "plain"
        rest.post("/api/v1/namespaces", {"metadata": {"name": namespace}})
        monkeypatch.setenv("KUBECONFIG", str(plane.kubeconfig))
        with running_operator(namespace):
            rest.post(dgd_path(namespace), _graph("plain", namespace, nodes=2, replicas=2))

            def explained() -> Doc | None:
                condition = _condition(rest, namespace, "plain", "GangPlacement")
                return condition if condition.get("status") == "False" else None

            condition = wait_for(explained, timeout=60, interval=0.5, description="GangPlacement")
            assert condition["reason"] == "GangSchedulingUnavailable"
            assert "1.37" in condition["message"] and "pod by pod" in condition["message"]
            statefulsets = rest.get(
                f"/apis/apps/v1/namespaces/{namespace}/statefulsets",
                labelSelector="nvidia.com/dynamo-graph-deployment-name=plain",
            )["items"]
            assert len(statefulsets) == 4
            assert all("schedulingGroup" not in s["spec"]["template"]["spec"] for s in statefulsets)
    finally:
        leftovers = plane.stop()
        plane.remove_data()
    assert not leftovers


def test_a_priority_change_moves_a_running_group_to_a_new_pod_group_whole(
    control_plane: ControlPlane,
    namespace: str,
    pod_group_api: PodGroupApi,
    pool_nodes: AddNodes,
    priority_classes: dict[str, str],
    operator: None,
) -> None:
    """A PodGroup's priority is immutable: the group gets a new PodGroup, its pods restart into
    it together, and the old PodGroup goes (no orphan)."""
    rest = control_plane.rest
    pool_nodes(2)
    doc = _graph("prio", namespace, nodes=2)
    doc["spec"]["priorityClassName"] = priority_classes["low"]
    rest.post(dgd_path(namespace), doc)
    wait_for(
        lambda: settled(rest, namespace, "prio"), timeout=120, interval=0.5, description="running"
    )
    (old,) = _pod_groups(rest, namespace, pod_group_api, "prio")

    rest.patch(
        dgd_path(namespace, "prio"), {"spec": {"priorityClassName": priority_classes["high"]}}
    )

    def moved() -> str | None:
        groups = _all_pod_groups(rest, namespace, pod_group_api, "prio")
        pods = _pods(rest, namespace, "prio")
        joined = {p["spec"].get("schedulingGroup", {}).get("podGroupName") for p in pods}
        if len(groups) != 1 or old in groups or len(pods) != 2 or len(joined) != 1:
            return None
        return next(iter(groups)) if settled(rest, namespace, "prio") else None

    new = wait_for(
        moved, timeout=180, interval=0.5, description="the group running in a new PodGroup"
    )
    group = _pod_groups(rest, namespace, pod_group_api, "prio")[new]
    assert group["spec"]["priorityClassName"] == priority_classes["high"]
    assert {p["spec"]["priorityClassName"] for p in _pods(rest, namespace, "prio")} == {
        priority_classes["high"]
    }


def test_a_group_removed_and_added_back_at_once_gets_its_pod_group_again(
    control_plane: ControlPlane,
    namespace: str,
    pod_group_api: PodGroupApi,
    pool_nodes: AddNodes,
    operator: None,
) -> None:
    """Scale down and straight back up: group 1's old PodGroup may still be held by its
    finalizer when the group is wanted again; once released, the PodGroup is made again."""
    rest = control_plane.rest
    pool_nodes(4)
    rest.post(dgd_path(namespace), _graph("bounce", namespace, nodes=2, replicas=2))
    wait_for(
        lambda: settled(rest, namespace, "bounce"),
        timeout=120,
        interval=0.5,
        description="2 groups",
    )
    path = dgd_path(namespace, "bounce")
    rest.patch(path, {"spec": {"services": {"worker": {"replicas": 1}}}})
    wait_for(
        lambda: rest.get(path)["status"].get("observedGeneration") == 2,
        timeout=60,
        interval=0.2,
        description="the scale down reconciled",
    )
    rest.patch(path, {"spec": {"services": {"worker": {"replicas": 2}}}})
    wait_for(
        lambda: (
            settled(rest, namespace, "bounce")
            and len(set(_bound(_pods(rest, namespace, "bounce")))) == 4
            and set(_pod_groups(rest, namespace, pod_group_api, "bounce"))
            == {"bounce-worker-0", "bounce-worker-1"}
        ),
        timeout=180,
        interval=0.5,
        description="both groups running with their PodGroups",
    )
