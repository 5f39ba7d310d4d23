"""The lean decoders of the watch cache keep exactly what the cache kept when it decoded every
field: rendered workloads and their pods, as the API server returns them, through the handlers'
own paths (`slim` + `cached_child` for children, `pod_summary` for pods)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from dgd_operator.api.constants import MANAGED_BY
from dgd_operator.api.tree import compact
from dgd_operator.api.validation import parse_dgd
from dgd_operator.builders.graph import build_graph
from dgd_operator.handlers import slim
from dgd_operator.reconcile.groups import pod_summary
from dgd_operator.reconcile.shapes import POD, SHAPES, WORKLOAD
from dgd_operator.reconcile.view import cached_child
from dgd_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

RECIPE = Path(__file__).parents[2] / "recipes" / "llama3-70b-disagg-multinode.yaml"
STAMP = "2026-12-06T21:37:12Z"


def _rendered() -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(RECIPE.read_text()) if d]
    dgd = next(d for d in docs if d.get("kind") == "DynamoGraphDeployment")
    return build_graph(parse_dgd(dgd), "ns", OperatorSettings().to_build_options())


def _served(manifest: dict[str, Any], n: int) -> dict[str, Any]:
    """`manifest` as the API server returns it once created and rolled out."""
    served = copy.deepcopy(manifest)
    meta = served["metadata"]
    meta.update(
        uid=f"uid-{n}",
        resourceVersion=str(100 + n),
        generation=1,
        creationTimestamp=STAMP,
        annotations={
            **meta.get("annotations", {}),
            "deployment.kubernetes.io/revision": "1",
            "nvidia.com/last-applied-hash": "abc",
        },
        managedFields=[
            {
                "manager": MANAGED_BY,
                "operation": "Update",
                "apiVersion": served["apiVersion"],
                "time": STAMP,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {}}}}},
            },
            {
                "manager": "kube-controller-manager",
                "operation": "Update",
                "apiVersion": served["apiVersion"],
                "time": STAMP,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:status": {"f:replicas": {}}},
                "subresource": "status",
            },
            {
                "manager": MANAGED_BY,
                "operation": "Update",
                "apiVersion": served["apiVersion"],
                "time": STAMP,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:replicas": {}}},
                "subresource": "scale",
            },
        ],
    )
    served["spec"].setdefault("revisionHistoryLimit", 10)
    served["status"] = {
        "observedGeneration": 1,
        "replicas": 1,
        "readyReplicas": 1,
        "conditions": [
            {"type": "Available", "status": "True", "lastUpdateTime": STAMP, "message": None}
        ],
    }
    return served


def _pod(workload: dict[str, Any], n: int) -> dict[str, Any]:
    """A running pod of `workload`, with the fields the kubelet and scheduler add."""
    template = workload["spec"]["template"]
    spec = {**copy.deepcopy(template["spec"]), "nodeName": "gpu-node-0"}
    spec["schedulingGroup"] = {"podGroupName": "g"}
    containers = [c["name"] for c in spec["containers"]]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **copy.deepcopy(template["metadata"]),
            "name": f"pod-{n}",
            "namespace": "ns",
            "uid": f"pod-uid-{n}",
            "resourceVersion": str(500 + n),
            "ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "uid": "rs-uid"}],
            "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}],
        },
        "spec": spec,
        "status": {
            "phase": "Running",
            "hostIP": "10.0.0.1",
            "conditions": [
                {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": STAMP}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [
                {
                    "name": name,
                    "image": "img",
                    "imageID": "sha",
                    "ready": True,
                    "restartCount": 2,
                    "state": {"running": {"startedAt": STAMP}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                }
                for name in containers
            ],
        },
    }


def _workloads() -> list[dict[str, Any]]:
    rendered = [o for o in _rendered() if o["kind"] in ("Deployment", "StatefulSet")]
    return [_served(o, n) for n, o in enumerate(rendered)]


def _variants(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """`obj` and the same object with fields absent or null, as a watch can deliver them."""
    no_status = {k: v for k, v in obj.items() if k != "status"}
    null_status = {**obj, "status": None}
    no_owners = {**obj, "metadata": {**obj["metadata"], "managedFields": None}}
    deleting = {
        **obj,
        "metadata": {
            **obj["metadata"],
            "deletionTimestamp": STAMP,
            "deletionGracePeriodSeconds": 0,
            "finalizers": ["foregroundDeletion"],
            "generateName": "x-",
        },
    }
    return [obj, no_status, null_status, no_owners, deleting]


def _child_entry(obj: dict[str, Any]) -> Any:
    return compact(cached_child(slim(obj)))


def _event(obj: dict[str, Any], type_: str = "MODIFIED") -> bytes:
    return orjson.dumps({"type": type_, "object": obj})


def test_the_rendered_graph_has_both_workload_kinds() -> None:
    kinds = {o["kind"] for o in _workloads()}
    assert kinds == {"Deployment", "StatefulSet"}
    assert SHAPES["Deployment"] is SHAPES["StatefulSet"] is WORKLOAD


@pytest.mark.parametrize("variant", range(5))
def test_a_workload_event_keeps_what_the_whole_decode_kept(variant: int) -> None:
    for workload in _workloads():
        obj = _variants(workload)[variant]
        raw = _event(obj)
        whole = orjson.loads(raw)["object"]
        lean = WORKLOAD.event(raw)
        assert lean["type"] == "MODIFIED"
        assert _child_entry(lean["object"]) == _child_entry(whole)


def test_a_workload_page_keeps_what_the_whole_decode_kept() -> None:
    workloads = _workloads()
    page = {"metadata": {"resourceVersion": "900", "continue": "c"}, "items": workloads}
    raw = orjson.dumps(page)
    lean = WORKLOAD.page(raw)
    assert lean["metadata"] == page["metadata"]
    assert [_child_entry(o) for o in lean["items"]] == [_child_entry(o) for o in workloads]


def test_the_lean_workload_holds_no_template_spec_and_no_field_sets() -> None:
    workload = _workloads()[0]
    lean = WORKLOAD.event(_event(workload))["object"]
    assert "spec" not in lean["spec"]["template"]
    assert lean["spec"]["template"]["metadata"] == workload["spec"]["template"]["metadata"]
    assert all("fieldsV1" not in entry for entry in lean["metadata"]["managedFields"])
    assert len(orjson.dumps(lean)) < len(orjson.dumps(workload)) / 2


def test_a_pod_event_keeps_what_pod_summary_kept() -> None:
    for n, workload in enumerate(_workloads()):
        pod = _pod(workload, n)
        for obj in (pod, {**pod, "status": None}, {k: v for k, v in pod.items() if k != "spec"}):
            raw = _event(obj)
            lean = POD.event(raw)["object"]
            whole = orjson.loads(raw)["object"]
            assert compact(pod_summary(lean)) == compact(pod_summary(whole))
            # What the informer itself reads: identity and version.
            assert lean["metadata"]["uid"] == whole["metadata"]["uid"]
            assert lean["metadata"]["resourceVersion"] == whole["metadata"]["resourceVersion"]
            assert lean["metadata"]["namespace"] == "ns"


def test_bookmark_and_error_events_keep_what_the_informer_reads() -> None:
    bookmark = {"kind": "Deployment", "metadata": {"resourceVersion": "77"}}
    assert WORKLOAD.event(_event(bookmark, "BOOKMARK")) == {
        "type": "BOOKMARK",
        "object": bookmark,
    }
    status = {"kind": "Status", "status": "Failure", "code": 410, "reason": "Expired"}
    assert POD.event(_event(status, "ERROR")) == {"type": "ERROR", "object": status}


def test_compact_like_shares_unchanged_subtrees_with_the_previous_version() -> None:
    first = _child_entry(_workloads()[0])
    changed = copy.deepcopy(first)
    changed["status"]["readyReplicas"] = 0
    changed["metadata"]["resourceVersion"] = "999"
    kept = compact(changed, first)
    assert kept == changed
    assert kept["spec"] is first["spec"]
    assert kept["metadata"]["labels"] is first["metadata"]["labels"]
    assert kept["status"] is not first["status"]
    assert kept["status"]["conditions"] is first["status"]["conditions"]
    # A value of another type is never taken from the previous version in its place.
    assert type(compact(1, True)) is int and compact([], {}) == []
    assert compact({"a": [1, 2]}, {"a": [1]}) == {"a": [1, 2]}


def test_an_object_that_does_not_fit_the_types_is_decoded_whole() -> None:
    odd = {"metadata": {"uid": "u", "resourceVersion": "5"}, "status": "not an object"}
    assert POD.event(_event(odd)) == {"type": "MODIFIED", "object": odd}
    page = {"metadata": {"resourceVersion": "6"}, "items": [odd]}
    assert POD.page(orjson.dumps(page)) == page
