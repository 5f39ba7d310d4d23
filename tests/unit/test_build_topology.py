"""Builders: `topologyConstraint.packDomain` becomes required pod affinities on the domain's
node label (graph: every pod; single-node service: its pods; multinode service: each group)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.test_build_gang_placement import API, FRONTEND
from tests.unit.test_build_multinode import make_dgd, multinode

from dgd_operator.api.constants import LABEL_COMPONENT, LABEL_GRAPH, LABEL_GROUP_INDEX
from dgd_operator.api.validation import validate_dgd
from dgd_operator.builders.gang import PodGroupApi
from dgd_operator.builders.graph import plan_graph
from dgd_operator.builders.options import BuildOptions
from dgd_operator.builders.placement import placement_fields, placement_warnings

pytestmark = pytest.mark.unit

RACK = "topology.kubernetes.io/rack"
DECODE: dict[str, Any] = {
    "componentType": "worker",
    "extraPodSpec": {"mainContainer": {"image": "w", "command": ["python3", "-m", "dynamo.vllm"]}},
}


def _pack_terms(pod: dict[str, Any]) -> list[dict[str, Any]]:
    affinity = (pod.get("affinity") or {}).get("podAffinity") or {}
    return list(affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or [])


def _templates(
    services: dict[str, Any], api: PodGroupApi | None = None, keys: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    options = BuildOptions(pod_group_api=api)
    if keys is not None:
        options = BuildOptions(pod_group_api=api, topology_domain_keys=keys)
    objects = plan_graph(make_dgd(services, **spec), "ns", options).objects
    return {
        o["metadata"]["name"]: o["spec"]["template"]["spec"]
        for o in objects
        if o["kind"] in ("StatefulSet", "Deployment")
    }


def test_a_graph_domain_packs_every_pod_of_the_graph() -> None:
    templates = _templates(
        {"Frontend": FRONTEND, "worker": multinode(2, 2)},
        topologyConstraint={"topologyProfile": "p", "packDomain": "rack"},
    )
    graph_term = {"labelSelector": {"matchLabels": {LABEL_GRAPH: "d"}}, "topologyKey": RACK}
    assert set(templates) == {
        "d-frontend",
        *(f"d-worker-{g}-{r}" for g in (0, 1) for r in ("ldr", "wkr")),
    }
    for pod in templates.values():
        assert _pack_terms(pod) == [graph_term]


@pytest.mark.parametrize("api", [API, None], ids=["pod-groups", "no-pod-groups"])
def test_a_multinode_services_domain_packs_each_group_on_its_own(api: PodGroupApi | None) -> None:
    worker = {**multinode(2, 2), "topologyConstraint": {"packDomain": "rack"}}
    templates = _templates(
        {"Frontend": FRONTEND, "worker": worker}, api,
        topologyConstraint={"topologyProfile": "p"},
    )  # fmt: skip
    assert _pack_terms(templates["d-frontend"]) == []
    for group in (0, 1):
        wanted = {LABEL_GRAPH: "d", LABEL_COMPONENT: "worker", LABEL_GROUP_INDEX: str(group)}
        for role in ("ldr", "wkr"):
            pod = templates[f"d-worker-{group}-{role}"]
            assert _pack_terms(pod) == [
                {"labelSelector": {"matchLabels": wanted}, "topologyKey": RACK}
            ]
            assert ("schedulingGroup" in pod) is (api is not None)


def test_a_single_node_services_domain_packs_its_pods_and_keeps_the_users_affinity() -> None:
    user_term = {
        "labelSelector": {"matchLabels": {"app": "cache"}},
        "topologyKey": "kubernetes.io/hostname",
    }
    decode = {
        **DECODE,
        "topologyConstraint": {"packDomain": "host"},
        "extraPodSpec": {**DECODE["extraPodSpec"], "affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [user_term]}}},
    }  # fmt: skip
    templates = _templates(
        {"Frontend": FRONTEND, "decode": decode}, topologyConstraint={"topologyProfile": "p"}
    )
    assert _pack_terms(templates["d-decode"]) == [
        user_term,
        {
            "labelSelector": {"matchLabels": {LABEL_GRAPH: "d", LABEL_COMPONENT: "decode"}},
            "topologyKey": "kubernetes.io/hostname",
        },
    ]
    assert _pack_terms(templates["d-frontend"]) == []


def test_domains_map_through_the_operator_setting_and_unknown_ones_add_nothing() -> None:
    spec = {"topologyConstraint": {"topologyProfile": "p", "packDomain": "hall"}}
    plain = _templates({"Frontend": FRONTEND}, **spec)
    assert _pack_terms(plain["d-frontend"]) == []
    mapped = _templates({"Frontend": FRONTEND}, keys={"hall": "example.com/hall"}, **spec)
    assert _pack_terms(mapped["d-frontend"])[0]["topologyKey"] == "example.com/hall"


def test_placement_fields_and_warnings_say_what_packing_does() -> None:
    worker = {**multinode(1, 2), "topologyConstraint": {"packDomain": "rack"}}
    dgd = make_dgd(
        {"Frontend": FRONTEND, "worker": worker},
        topologyConstraint={"topologyProfile": "p", "packDomain": "nowhere"},
    )
    fields = {f.path: f for f in placement_fields(dgd)}
    assert fields["spec.topologyConstraint.packDomain"].acted_on is False
    assert "'nowhere'" in fields["spec.topologyConstraint.packDomain"].effect
    assert fields["spec.topologyConstraint.topologyProfile"].acted_on is False
    rack = fields["spec.services.worker.topologyConstraint.packDomain"]
    assert rack.acted_on is True and RACK in rack.effect and "each group" in rack.effect
    messages = {p.path: p.message for p in placement_warnings(dgd)}
    assert messages["spec.services.worker.topologyConstraint.packDomain"].startswith(
        "placement, acted on: each group's pods packed into one 'rack' domain"
    )
    assert messages["spec.topologyConstraint.packDomain"].startswith("placement, not acted on:")


def test_v1beta1_documents_get_placement_warnings_in_their_own_spelling() -> None:
    doc = {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": "d"},
        "spec": {
            "topologyConstraint": {"clusterTopologyName": "p", "packDomain": "zone"},
            "components": [
                {"name": "Frontend", "type": "frontend",
                 "podTemplate": {"spec": {"containers": [{"name": "main", "image": "fe"}]}}},
                {"name": "decode", "type": "worker", "topologyConstraint": {"packDomain": "rack"},
                 "podTemplate": {"spec": {"containers": [{"name": "main", "image": "w"}]}}},
            ],
        },
    }  # fmt: skip
    result = validate_dgd(doc)
    assert result.dgd is not None, result.errors
    paths = [p.path for p in placement_warnings(result.dgd, result.hub)]
    assert "spec.topologyConstraint.packDomain" in paths
    assert "spec.components[1].topologyConstraint.packDomain" in paths
