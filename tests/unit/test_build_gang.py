"""builders/gang.py: PodGroup detection from discovery, the PodGroup of a multinode group and the
pod fields that make the group's pods join it, share its priority and pack into one domain."""

from __future__ import annotations

from typing import Any

import pytest

from dgd_operator.api.constants import LABEL_COMPONENT, LABEL_GRAPH, LABEL_GROUP_INDEX
from dgd_operator.builders.gang import (
    GangGroup,
    PodGroupApi,
    apply_gang_fields,
    build_pod_group,
    find_pod_group_api,
    gang_pod_fields,
    group_member_labels,
    pod_group_name,
)

pytestmark = pytest.mark.unit

V1BETA1 = PodGroupApi(version="v1beta1")
ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def aggregated(versions: dict[str, list[str]], group: str = "scheduling.k8s.io") -> dict[str, Any]:
    """An APIGroupDiscoveryList (GET /apis, apidiscovery.k8s.io/v2) with one group."""
    return {
        "apiVersion": "apidiscovery.k8s.io/v2",
        "kind": "APIGroupDiscoveryList",
        "items": [
            {"metadata": {"name": "apps"}, "versions": [{"version": "v1", "resources": []}]},
            {
                "metadata": {"name": group},
                "versions": [
                    {
                        "version": version,
                        "resources": [
                            {"resource": plural, "verbs": ALL_VERBS} for plural in plurals
                        ],
                    }
                    for version, plurals in versions.items()
                ],
            },
        ],
    }


def legacy(group_version: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """An APIResourceList (GET /apis/<group>/<version>)."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


@pytest.mark.parametrize(
    ("discovery", "expected"),
    [
        pytest.param(
            aggregated({"v1": ["priorityclasses"], "v1beta1": ["workloads", "podgroups"]}),
            V1BETA1,
            id="aggregated-1.37-gang-on",
        ),
        pytest.param(aggregated({"v1": ["priorityclasses"]}), None, id="aggregated-gang-off"),
        pytest.param(
            aggregated({"v1alpha2": ["workloads", "podgroups"]}),
            None,
            id="aggregated-unknown-version-is-not-used",
        ),
        pytest.param(
            aggregated({"v1beta1": ["podgroups"]}, group="example.com"),
            None,
            id="aggregated-other-group",
        ),
        pytest.param(
            [legacy("scheduling.k8s.io/v1beta1", [{"name": "podgroups", "verbs": ALL_VERBS}])],
            V1BETA1,
            id="legacy-served",
        ),
        pytest.param(
            legacy("scheduling.k8s.io/v1beta1", [{"name": "podgroups", "verbs": ALL_VERBS}]),
            V1BETA1,
            id="legacy-single-document",
        ),
        pytest.param(
            [legacy("scheduling.k8s.io/v1beta1", [{"name": "podgroups", "verbs": ["get"]}])],
            None,
            id="legacy-read-only-is-not-enough",
        ),
        pytest.param(
            [
                legacy(
                    "scheduling.k8s.io/v1beta1",
                    [{"name": "podgroups/status", "verbs": ALL_VERBS}],
                )
            ],
            None,
            id="legacy-status-subresource-only",
        ),
        pytest.param([], None, id="nothing-discovered"),
    ],
)
def test_find_pod_group_api(discovery: Any, expected: PodGroupApi | None) -> None:
    assert find_pod_group_api(discovery) == expected


def test_pod_group_api_paths() -> None:
    assert V1BETA1.api_version == "scheduling.k8s.io/v1beta1"
    assert (
        V1BETA1.collection_path("ns1") == "/apis/scheduling.k8s.io/v1beta1/namespaces/ns1/podgroups"
    )


def test_names_and_member_labels_are_deterministic() -> None:
    assert pod_group_name("llama", "VllmWorker", 2) == "llama-vllmworker-2"
    assert group_member_labels("llama", "VllmWorker", 2) == {
        LABEL_GRAPH: "llama",
        LABEL_COMPONENT: "VllmWorker",
        LABEL_GROUP_INDEX: "2",
    }


def group(**overrides: Any) -> GangGroup:
    values: dict[str, Any] = {
        "name": pod_group_name("g", "Worker", 0),
        "node_count": 4,
        "member_labels": group_member_labels("g", "Worker", 0),
    }
    values.update(overrides)
    return GangGroup(**values)


PACK_TERM = {
    "labelSelector": {"matchLabels": group_member_labels("g", "Worker", 0)},
    "topologyKey": "example.com/rack",
}


@pytest.mark.parametrize(
    ("overrides", "expected_spec"),
    [
        ({}, {"schedulingPolicy": {"gang": {"minCount": 4}}}),
        ({"node_count": 2}, {"schedulingPolicy": {"gang": {"minCount": 2}}}),
        (
            {"priority_class_name": "serving-high"},
            {"schedulingPolicy": {"gang": {"minCount": 4}}, "priorityClassName": "serving-high"},
        ),
        # Packing is a pod-level constraint; the PodGroup does not change.
        ({"pack_domain_key": "example.com/rack"}, {"schedulingPolicy": {"gang": {"minCount": 4}}}),
    ],
)
def test_build_pod_group(overrides: dict[str, Any], expected_spec: dict[str, Any]) -> None:
    manifest = build_pod_group(group(**overrides), V1BETA1)
    assert manifest == {
        "apiVersion": "scheduling.k8s.io/v1beta1",
        "kind": "PodGroup",
        "metadata": {"name": "g-worker-0"},
        "spec": expected_spec,
    }


def test_pod_group_metadata_labels() -> None:
    manifest = build_pod_group(group(labels={"a": "b"}), V1BETA1)
    assert manifest["metadata"] == {"name": "g-worker-0", "labels": {"a": "b"}}


@pytest.mark.parametrize(
    ("overrides", "api", "expected"),
    [
        ({}, V1BETA1, {"schedulingGroup": {"podGroupName": "g-worker-0"}}),
        ({}, None, {}),
        (
            {"priority_class_name": "hi"},
            V1BETA1,
            {"schedulingGroup": {"podGroupName": "g-worker-0"}, "priorityClassName": "hi"},
        ),
        # Without the PodGroup API, priority and packing still apply.
        (
            {"priority_class_name": "hi", "pack_domain_key": "example.com/rack"},
            None,
            {
                "priorityClassName": "hi",
                "affinity": {
                    "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [PACK_TERM]}
                },
            },
        ),
        (
            {"pack_domain_key": "example.com/rack"},
            V1BETA1,
            {
                "schedulingGroup": {"podGroupName": "g-worker-0"},
                "affinity": {
                    "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [PACK_TERM]}
                },
            },
        ),
    ],
)
def test_gang_pod_fields(
    overrides: dict[str, Any], api: PodGroupApi | None, expected: dict[str, Any]
) -> None:
    assert gang_pod_fields(group(**overrides), api) == expected


def test_priority_is_the_same_on_pod_group_and_pods() -> None:
    # kube-scheduler refuses a group whose pods' priority differs from the PodGroup's.
    for name in (None, "hi"):
        g = group(priority_class_name=name)
        pod_group = build_pod_group(g, V1BETA1)
        fields = gang_pod_fields(g, V1BETA1)
        assert pod_group["spec"].get("priorityClassName") == fields.get("priorityClassName")


USER_TERM = {
    "labelSelector": {"matchLabels": {"app": "cache"}},
    "topologyKey": "kubernetes.io/hostname",
}


@pytest.mark.parametrize(
    ("pod_spec", "expected_affinity"),
    [
        ({}, {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [PACK_TERM]}}),
        (
            {"affinity": {"nodeAffinity": {"x": 1}}},
            {
                "nodeAffinity": {"x": 1},
                "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [PACK_TERM]},
            },
        ),
        (
            {
                "affinity": {
                    "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [USER_TERM]}
                }
            },
            {
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [USER_TERM, PACK_TERM]
                }
            },
        ),
        (
            {
                "affinity": {
                    "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [PACK_TERM]}
                }
            },
            {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [PACK_TERM]}},
        ),
    ],
    ids=["empty", "keeps-node-affinity", "appends-to-user-terms", "idempotent"],
)
def test_apply_gang_fields_merges_affinity(
    pod_spec: dict[str, Any], expected_affinity: dict[str, Any]
) -> None:
    original = {**pod_spec, "containers": [{"name": "main"}]}
    g = group(pack_domain_key="example.com/rack", priority_class_name="hi")
    merged = apply_gang_fields(original, gang_pod_fields(g, V1BETA1))
    assert merged["affinity"] == expected_affinity
    assert merged["schedulingGroup"] == {"podGroupName": "g-worker-0"}
    assert merged["priorityClassName"] == "hi"
    assert merged["containers"] == [{"name": "main"}]
    assert original == {**pod_spec, "containers": [{"name": "main"}]}, "input must not change"


def test_apply_without_fields_is_identity() -> None:
    spec = {"containers": [{"name": "main"}], "affinity": {"nodeAffinity": {"x": 1}}}
    assert apply_gang_fields(spec, gang_pod_fields(group(), None)) == spec


@pytest.mark.parametrize(
    "overrides",
    [{"node_count": 0}, {"member_labels": {}, "pack_domain_key": "rack"}],
    ids=["empty-group", "packing-without-selector"],
)
def test_invalid_groups_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        group(**overrides)
