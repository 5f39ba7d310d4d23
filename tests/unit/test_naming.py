"""`api.naming`: every child name, group membership read from labels, and the length rules."""

from __future__ import annotations

import pytest

from dgd_operator.api import constants, naming
from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.api.validation import label_value_problems
from dgd_operator.builders.graph import build_graph
from dgd_operator.builders.options import BuildOptions

pytestmark = pytest.mark.unit


def _multinode_dgd(name: str = "g", replicas: int = 2) -> DynamoGraphDeployment:
    return DynamoGraphDeployment.model_validate(
        {
            "apiVersion": "nvidia.com/v1alpha1",
            "kind": "DynamoGraphDeployment",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {
                "services": {
                    "Decode.Worker": {
                        "componentType": "worker",
                        "replicas": replicas,
                        "multinode": {"nodeCount": 2},
                        "resources": {"limits": {"gpu": "8"}},
                        "extraPodSpec": {
                            "mainContainer": {
                                "image": "img",
                                "command": ["python3", "-m", "dynamo.sglang"],
                                "args": ["--tp-size", "16"],
                            }
                        },
                    }
                }
            },
        }
    )


def test_child_names() -> None:
    assert naming.component_name("g", "Decode.Worker") == "g-decode.worker"
    assert naming.adapter_name("g", "Decode.Worker") == "g-decode.worker"
    assert naming.service_object_name("g", "Decode.Worker") == "g-decode-worker"
    assert naming.dynamo_namespace("ns", "g.x") == "ns-g-x"
    assert naming.dynamo_namespace("ns", "g", global_namespace=True) == "dynamo"
    assert naming.nodes_service_name("g", "W") == "g-w-nodes"
    assert naming.group_statefulset_name("g", "W", 3, "leader") == "g-w-3-ldr"
    assert naming.group_statefulset_name("g", "W", 3, "worker") == "g-w-3-wkr"
    assert naming.leader_address("g", "W", 0) == "g-w-0-ldr-0.g-w-nodes"
    assert naming.worker_address("g", "W", 0, 2) == "g-w-0-wkr-2.g-w-nodes"
    assert naming.discovery_role_binding_name("g") == "g-k8s-service-discovery-binding"
    assert naming.launch_scripts_configmap_name("g") == "g-wait-leader-script"
    assert naming.longest_group_statefulset_name("g", "W", 12) == "g-w-11-ldr"


def test_group_membership_is_read_from_the_labels_of_every_built_statefulset() -> None:
    objects = build_graph(_multinode_dgd(), "ns", BuildOptions())
    statefulsets = [o for o in objects if o["kind"] == "StatefulSet"]
    found = {
        o["metadata"]["name"]: naming.group_membership(o["metadata"]["labels"])
        for o in statefulsets
    }
    assert found == {
        "g-decode.worker-0-ldr": naming.GroupMembership("Decode.Worker", 0, "leader"),
        "g-decode.worker-0-wkr": naming.GroupMembership("Decode.Worker", 0, "worker"),
        "g-decode.worker-1-ldr": naming.GroupMembership("Decode.Worker", 1, "leader"),
        "g-decode.worker-1-wkr": naming.GroupMembership("Decode.Worker", 1, "worker"),
    }
    # Pods carry the same labels, so a pod's group is read the same way.
    for sts in statefulsets:
        pod_labels = sts["spec"]["template"]["metadata"]["labels"]
        assert naming.group_membership(pod_labels) == found[sts["metadata"]["name"]]


@pytest.mark.parametrize(
    "labels",
    [
        None,
        {},
        {constants.LABEL_COMPONENT: "w", constants.LABEL_ROLE: "leader"},
        {
            constants.LABEL_COMPONENT: "w",
            constants.LABEL_GROUP_INDEX: "x",
            constants.LABEL_ROLE: "leader",
        },
        {
            constants.LABEL_COMPONENT: "w",
            constants.LABEL_GROUP_INDEX: "0",
            constants.LABEL_ROLE: "boss",
        },
        {constants.LABEL_GROUP_INDEX: "0", constants.LABEL_ROLE: "worker"},
    ],
)
def test_objects_outside_a_group_have_no_membership(labels: dict[str, str] | None) -> None:
    assert naming.group_membership(labels) is None


def test_label_value_problems_skip_global_namespaces_and_name_long_dgd_names() -> None:
    dgd = _multinode_dgd(name="g" * 40)
    assert label_value_problems("n" * 22, dgd) == []  # 22 + 1 + 40 = 63
    [problem] = label_value_problems("n" * 23, dgd)
    assert problem.path == "metadata.name" and constants.LABEL_DYNAMO_NAMESPACE in problem.message
    for spec in dgd.spec.services.values():
        spec.global_dynamo_namespace = True
    assert label_value_problems("n" * 23, dgd) == []
    dgd.metadata.name = "g" * 64
    [problem] = label_value_problems("n", dgd)
    assert problem.path == "metadata.name" and constants.LABEL_GRAPH in problem.message
