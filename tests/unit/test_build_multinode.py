"""Builders: multinode services as leader/worker StatefulSet groups (team multinode contract)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.fixtures.dgd import DGD

from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.builders.graph import build_graph, plan_graph
from dgd_operator.builders.options import BuildOptions

pytestmark = pytest.mark.unit

VLLM_WORKER: dict[str, Any] = {
    "componentType": "worker",
    "resources": {"limits": {"gpu": "4"}},
    "extraPodSpec": {
        "mainContainer": {
            "image": "img",
            "command": ["python3", "-m", "dynamo.vllm"],
            "args": ["--model", "m", "--tensor-parallel-size", "8"],
        }
    },
}


def make_dgd(
    services: dict[str, Any], uid: str | None = "u-1", **spec: Any
) -> DynamoGraphDeployment:
    return DGD("d").meta(**({"uid": uid} if uid else {})).services(services).spec(**spec).model()


def multinode(
    replicas: int | None, node_count: int, base: dict[str, Any] | None = None
) -> dict[str, Any]:
    service = {**(base or VLLM_WORKER), "multinode": {"nodeCount": node_count}}
    if replicas is not None:
        service["replicas"] = replicas
    return service


def by_name(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def env_of(statefulset: dict[str, Any]) -> dict[str, Any]:
    container = statefulset["spec"]["template"]["spec"]["containers"][-1]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize(
    ("replicas", "node_count", "expected"),
    [
        (None, 2, {"d-decode-0-ldr": 1, "d-decode-0-wkr": 1}),
        (
            2,
            3,
            {"d-decode-0-ldr": 1, "d-decode-0-wkr": 2, "d-decode-1-ldr": 1, "d-decode-1-wkr": 2},
        ),
        (0, 2, {}),
    ],
)
def test_groups(replicas: int | None, node_count: int, expected: dict[str, int]) -> None:
    plan = plan_graph(make_dgd({"Decode": multinode(replicas, node_count)}), "ns", BuildOptions())
    statefulsets = by_name(plan.objects, "StatefulSet")
    assert {name: s["spec"]["replicas"] for name, s in statefulsets.items()} == expected
    assert plan.services["Decode"].kind == "StatefulSet"
    assert plan.services["Decode"].names == tuple(expected)
    for name, statefulset in statefulsets.items():
        spec = statefulset["spec"]
        assert spec["serviceName"] == "d-decode-nodes"
        assert spec["podManagementPolicy"] == "Parallel"
        assert spec["selector"] == {"matchLabels": {"nvidia.com/selector": name}}
        assert spec["template"]["metadata"]["labels"]["nvidia.com/selector"] == name
        assert spec.get("ordinals") == ({"start": 1} if name.endswith("-wkr") else None)
        assert statefulset["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_group_env() -> None:
    objs = build_graph(make_dgd({"Decode": multinode(2, 3)}), "ns", BuildOptions())
    statefulsets = by_name(objs, "StatefulSet")
    leader = env_of(statefulsets["d-decode-1-ldr"])
    worker = env_of(statefulsets["d-decode-1-wkr"])
    for env in (leader, worker):
        assert env["DGD_NODE_COUNT"] == "3"
        assert env["DGD_GROUP_INDEX"] == "1"
        assert env["DGD_LEADER_ADDRESS"] == "d-decode-1-ldr-0.d-decode-nodes"
    assert leader["DGD_NODE_RANK"] == "0"
    assert worker["DGD_NODE_RANK"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }


def test_services_of_a_multinode_component() -> None:
    services = by_name(
        build_graph(make_dgd({"Decode": multinode(1, 2)}), "ns", BuildOptions()), "Service"
    )
    headless = services["d-decode-nodes"]["spec"]
    assert headless == {
        "clusterIP": "None",
        "publishNotReadyAddresses": True,
        "selector": {
            "nvidia.com/dynamo-graph-deployment-name": "d",
            "nvidia.com/dynamo-component": "Decode",
        },
    }
    assert services["d-decode"]["spec"]["selector"]["role"] == "leader"


def test_roles_get_backend_rewrites() -> None:
    statefulsets = by_name(
        build_graph(make_dgd({"Decode": multinode(1, 2)}), "ns", BuildOptions()), "StatefulSet"
    )
    worker = statefulsets["d-decode-0-wkr"]["spec"]["template"]
    leader = statefulsets["d-decode-0-ldr"]["spec"]["template"]
    assert worker["metadata"]["labels"]["role"] == "worker"
    worker_main = worker["spec"]["containers"][-1]
    assert "livenessProbe" not in worker_main and "readinessProbe" not in worker_main
    assert "livenessProbe" in leader["spec"]["containers"][-1]
    assert "$(DGD_LEADER_ADDRESS)" in " ".join(worker_main["args"])


def test_shared_launch_configmap_once_and_owned() -> None:
    dgd = make_dgd({"Decode": multinode(1, 2), "Prefill": multinode(1, 2)})
    objs = build_graph(dgd, "ns", BuildOptions())
    configmaps = [o for o in objs if o["kind"] == "ConfigMap"]
    assert len(configmaps) == 1
    metadata = configmaps[0]["metadata"]
    assert metadata["name"] == "d-wait-leader-script" and metadata["namespace"] == "ns"
    assert metadata["labels"]["app.kubernetes.io/managed-by"] == "dgd-operator"
    assert metadata["ownerReferences"][0]["kind"] == "DynamoGraphDeployment"
    kinds = [o["kind"] for o in objs]
    assert kinds.index("ConfigMap") < kinds.index("Service") < kinds.index("StatefulSet")


def test_trtllm_groups_mount_the_mpi_secret() -> None:
    trtllm = {
        "componentType": "worker",
        "resources": {"limits": {"gpu": "4"}},
        "extraPodSpec": {
            "mainContainer": {
                "image": "img",
                "command": ["python3", "-m", "dynamo.trtllm"],
                "args": ["--model-path", "m"],
            }
        },
    }
    options = BuildOptions(mpi_ssh_secret_name="my-ssh")
    statefulsets = by_name(
        build_graph(make_dgd({"W": multinode(1, 2, trtllm)}), "ns", options), "StatefulSet"
    )
    for statefulset in statefulsets.values():
        volumes = statefulset["spec"]["template"]["spec"]["volumes"]
        assert any(v.get("secret", {}).get("secretName") == "my-ssh" for v in volumes)
