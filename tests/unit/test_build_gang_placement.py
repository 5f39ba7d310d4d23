"""Builders: gang placement of multinode groups (PodGroups, pod fields) and the graph's priority."""

from __future__ import annotations

from typing import Any

import pytest
from tests.fixtures.dgd import DGD
from tests.unit.test_build_multinode import VLLM_WORKER, make_dgd, multinode

from dgd_operator.api.constants import LABEL_GROUP_INDEX
from dgd_operator.builders.gang import PodGroupApi
from dgd_operator.builders.graph import plan_graph
from dgd_operator.builders.options import BuildOptions
from dgd_operator.builders.placement import placement_fields

pytestmark = pytest.mark.unit

API = PodGroupApi(version="v1beta1")
FRONTEND: dict[str, Any] = {
    "componentType": "frontend",
    "extraPodSpec": {"mainContainer": {"image": "fe"}},
}


def _objects(api: PodGroupApi | None, **spec: Any) -> list[dict[str, Any]]:
    dgd = make_dgd({"Frontend": FRONTEND, "worker": multinode(2, 4)}, **spec)
    return plan_graph(dgd, "ns", BuildOptions(pod_group_api=api)).objects


def _templates(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"]: o["spec"]["template"]["spec"]
        for o in objects
        if o["kind"] in ("StatefulSet", "Deployment")
    }


def test_each_group_gets_a_gang_pod_group_before_its_statefulsets() -> None:
    objects = _objects(API)
    kinds_names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    groups = [o for o in objects if o["kind"] == "PodGroup"]
    assert [g["metadata"]["name"] for g in groups] == ["d-worker-0", "d-worker-1"]
    for index, group in enumerate(groups):
        assert group["apiVersion"] == "scheduling.k8s.io/v1beta1"
        assert group["spec"] == {"schedulingPolicy": {"gang": {"minCount": 4}}}
        meta = group["metadata"]
        assert meta["namespace"] == "ns" and meta["ownerReferences"][0]["uid"] == "u-1"
        assert meta["labels"][LABEL_GROUP_INDEX] == str(index)
        # The PodGroup comes before the StatefulSets whose pods join it.
        position = kinds_names.index(("PodGroup", f"d-worker-{index}"))
        assert position < kinds_names.index(("StatefulSet", f"d-worker-{index}-ldr"))
    templates = _templates(objects)
    for index in (0, 1):
        for role in ("ldr", "wkr"):
            pod = templates[f"d-worker-{index}-{role}"]
            assert pod["schedulingGroup"] == {"podGroupName": f"d-worker-{index}"}
            assert "priorityClassName" not in pod
    assert "schedulingGroup" not in templates["d-frontend"]


def test_without_the_api_no_pod_group_and_no_scheduling_group_is_sent() -> None:
    objects = _objects(None)
    assert not [o for o in objects if o["kind"] == "PodGroup"]
    assert all("schedulingGroup" not in pod for pod in _templates(objects).values())


@pytest.mark.parametrize("api", [API, None])
def test_priority_class_goes_on_every_pod_and_on_the_pod_groups(api: PodGroupApi | None) -> None:
    objects = _objects(api, priorityClassName="high")
    assert {pod.get("priorityClassName") for pod in _templates(objects).values()} == {"high"}
    for group in (o for o in objects if o["kind"] == "PodGroup"):
        assert group["spec"]["priorityClassName"] == "high"


def test_a_services_own_priority_class_wins_and_its_pod_group_follows() -> None:
    worker = multinode(1, 2, {**VLLM_WORKER, "extraPodSpec": {
        **VLLM_WORKER["extraPodSpec"], "priorityClassName": "batch"}})  # fmt: skip
    dgd = make_dgd({"Frontend": FRONTEND, "worker": worker}, priorityClassName="high")
    objects = plan_graph(dgd, "ns", BuildOptions(pod_group_api=API)).objects
    templates = _templates(objects)
    assert templates["d-frontend"]["priorityClassName"] == "high"
    assert templates["d-worker-0-ldr"]["priorityClassName"] == "batch"
    assert templates["d-worker-0-wkr"]["priorityClassName"] == "batch"
    (group,) = (o for o in objects if o["kind"] == "PodGroup")
    assert group["spec"]["priorityClassName"] == "batch"


def _queued(
    annotations: dict[str, str], worker: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    dgd = (
        DGD("d")
        .meta(uid="u-1", annotations=annotations)
        .services({"Frontend": FRONTEND, "worker": worker or multinode(1, 2)})
        .model()
    )
    return plan_graph(dgd, "ns", BuildOptions(pod_group_api=API)).objects


@pytest.mark.parametrize(
    ("annotation", "scheduler", "labels", "pod_annotations"),
    [
        ("nvidia.com/kai-scheduler-queue", "kai-scheduler", {"kai.scheduler/queue": "q"}, {}),
        ("nvidia.com/volcano-queue", "volcano", {}, {"scheduling.volcano.sh/queue-name": "q"}),
    ],
)
def test_a_queue_annotation_hands_every_pod_to_that_scheduler_and_no_pod_group_is_made(
    annotation: str, scheduler: str, labels: dict[str, str], pod_annotations: dict[str, str]
) -> None:
    objects = _queued({annotation: "q"})
    templates = {
        o["metadata"]["name"]: o["spec"]["template"]
        for o in objects
        if o["kind"] in ("StatefulSet", "Deployment")
    }
    for template in templates.values():
        assert template["spec"]["schedulerName"] == scheduler
        assert "schedulingGroup" not in template["spec"]
        assert labels.items() <= template["metadata"]["labels"].items()
        assert pod_annotations.items() <= (template["metadata"].get("annotations") or {}).items()
    assert not [o for o in objects if o["kind"] == "PodGroup"]


def test_a_schedulername_the_user_set_wins_over_the_queue() -> None:
    worker = multinode(1, 2, {**VLLM_WORKER, "extraPodSpec": {
        **VLLM_WORKER["extraPodSpec"], "schedulerName": "default-scheduler"}})  # fmt: skip
    objects = _queued({"nvidia.com/kai-scheduler-queue": "q"}, worker)
    leader = next(o for o in objects if o["metadata"]["name"] == "d-worker-0-ldr")
    assert leader["spec"]["template"]["spec"]["schedulerName"] == "default-scheduler"
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "PodGroup"] == ["d-worker-0"]


def _fields(served: bool | None, **meta: Any) -> dict[str, tuple[bool, str]]:
    builder = DGD("d").services({"Frontend": FRONTEND, "worker": multinode(1, 2)})
    if meta:
        builder = builder.meta(**meta)
    dgd = builder.spec(priorityClassName="high").model()
    return {f.path: (f.acted_on, f.effect) for f in placement_fields(dgd, pod_groups_served=served)}


def test_placement_fields_say_what_is_acted_on() -> None:
    fields = _fields(True)
    assert fields["spec.priorityClassName"][0] is True
    assert fields["spec.services.worker.multinode"] == (
        True,
        "groups placed all-or-nothing through PodGroups",
    )
    assert "spec.services.Frontend.multinode" not in fields
    assert _fields(False)["spec.services.worker.multinode"][0] is False
    assert "when the cluster serves" in _fields(None)["spec.services.worker.multinode"][1]
    queued = _fields(
        True,
        annotations={"nvidia.com/kai-scheduler-queue": "q", "nvidia.com/volcano-queue": "v"},
    )
    assert queued["metadata.annotations[nvidia.com/kai-scheduler-queue]"][0] is True
    assert queued["metadata.annotations[nvidia.com/volcano-queue]"][0] is False
    assert queued["spec.services.worker.multinode"] == (
        False,
        "groups placed by kai-scheduler; no Kubernetes PodGroup",
    )
