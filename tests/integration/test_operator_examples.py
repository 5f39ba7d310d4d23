"""Every single-node v1alpha1 graph of ours and (peer check) of Dynamo's examples reaches
`state: successful` under the operator (the fake kubelet makes pods Ready; the images never run)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from tests import peer_corpus
from tests.fixtures.catalog import graph_paths
from tests.helpers import wait_for, yaml_documents
from tests.integration.node_pools import POOL_KEY, AddNodes
from tests.integration.operator_harness import dgd_path, events_for, running_operator

from dgd_operator.api.models import DynamoGraphDeployment, parse_quantity
from dgd_operator.builders.graph import plan_graph
from dgd_operator.builders.options import BuildOptions
from dgd_operator.dev.controlplane import ControlPlane
from dgd_operator.dev.kubelet import GPU_RESOURCE, NodePlan

pytestmark = pytest.mark.integration


def _single_node_examples(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """DGDs without multinode services, PVC references (those need storage the test cluster
    does not provision) or DRA claims (no DRA driver either), keyed by name."""
    found: dict[str, dict[str, Any]] = {}
    for path in paths:
        for doc in yaml_documents(path):
            if doc.get("kind") != "DynamoGraphDeployment":
                continue
            services = doc["spec"]["services"].values()
            if any(svc.get("multinode") for svc in services) or doc["spec"].get("pvcs"):
                continue
            if any(svc.get("volumeMounts") or svc.get("pvc") for svc in services):
                continue
            if any((svc.get("extraPodSpec") or {}).get("resourceClaims") for svc in services):
                continue
            found[doc["metadata"]["name"]] = doc
    return found


def _pool_size(examples: dict[str, dict[str, Any]], namespace: str, gpus_per_node: int) -> int:
    """Simulated nodes (of the default shape) that hold every pod of `examples` at once: by
    GPUs, CPU, memory and pod count of the rendered Deployments, plus one node of slack for
    what a sum cannot see (a pod does not split across nodes)."""
    shape = NodePlan(name="shape", index=0, gpus=gpus_per_node)
    capacity = {GPU_RESOURCE: gpus_per_node, "cpu": shape.cpu, "memory": shape.memory}
    demand = {name: parse_quantity("0") for name in capacity}
    pods = 0
    for doc in examples.values():
        for obj in plan_graph(
            DynamoGraphDeployment.model_validate(doc), namespace, BuildOptions()
        ).objects:
            if obj["kind"] != "Deployment":
                continue
            replicas = int(obj["spec"].get("replicas", 1))
            pods += replicas
            for container in obj["spec"]["template"]["spec"]["containers"]:
                resources = container.get("resources") or {}
                for name in demand:
                    amount = (resources.get("requests") or {}).get(name) or (
                        resources.get("limits") or {}
                    ).get(name)
                    if amount is not None:
                        demand[name] += parse_quantity(str(amount)) * replicas
    needed = [math.ceil(pods / shape.pods)]
    needed += [math.ceil(demand[name] / parse_quantity(str(capacity[name]))) for name in demand]
    return max(needed) + 1


def _pin_to_pool(doc: dict[str, Any], namespace: str) -> None:
    """Every service's pods go to this test's node pool (its label and taint)."""
    for service in doc["spec"]["services"].values():
        extra = service.setdefault("extraPodSpec", {})
        extra.setdefault("nodeSelector", {})[POOL_KEY] = namespace
        extra.setdefault("tolerations", []).append(
            {"key": POOL_KEY, "operator": "Equal", "value": namespace, "effect": "NoSchedule"}
        )


@pytest.mark.parametrize("corpus", ["own", pytest.param("dynamo", marks=peer_corpus.peer_corpus)])
def test_examples(
    control_plane: ControlPlane, namespace: str, pool_nodes: AddNodes, corpus: str
) -> None:
    """All examples are applied at once and each reports successful with per-service counts.

    They run on a node pool of their own, sized to what they ask for: the examples together
    outgrow the shared cluster's 32 GPUs as graphs are added, and other tests' pods still
    being finalised must not decide whether they fit."""
    rest = control_plane.rest
    examples = _single_node_examples(
        graph_paths() if corpus == "own" else peer_corpus.v1alpha1_example_paths()
    )
    assert len(examples) >= 12, sorted(examples)
    pool_nodes(_pool_size(examples, namespace, control_plane.gpus_per_node))
    for doc in examples.values():
        _pin_to_pool(doc, namespace)
    try:
        _apply_and_check(rest, namespace, examples)
    finally:
        _drain(rest, namespace)


def _drain(rest: Any, namespace: str) -> None:
    """Delete the examples' Deployments (the operator has stopped) and wait until their pods
    are gone, while the pool's nodes still exist: a pod bound to a removed node is never
    finalised, and its namespace would stay terminating."""
    for plural in ("deployments", "replicasets"):
        rest.request("DELETE", f"/apis/apps/v1/namespaces/{namespace}/{plural}")
    rest.request("DELETE", f"/api/v1/namespaces/{namespace}/pods")
    wait_for(
        lambda: not rest.get(f"/api/v1/namespaces/{namespace}/pods")["items"],
        timeout=60,
        description=f"pods of {namespace} gone",
    )


def _apply_and_check(rest: Any, namespace: str, examples: dict[str, dict[str, Any]]) -> None:
    with running_operator(namespace):
        for doc in examples.values():
            rest.post(dgd_path(namespace), doc)

        def pending() -> list[str]:
            items = rest.get(dgd_path(namespace))["items"]
            states = {o["metadata"]["name"]: (o.get("status") or {}).get("state") for o in items}
            failed = {
                o["metadata"]["name"]: o["status"]["conditions"]
                for o in items
                if states[o["metadata"]["name"]] == "failed"
            }
            if failed:
                pytest.fail(f"examples failed: {failed}")
            return sorted(f"{n}={states.get(n)}" for n in examples if states.get(n) != "successful")

        def all_successful() -> bool:
            nonlocal last_pending
            last_pending = pending()
            return not last_pending

        last_pending: list[str] = []
        try:
            wait_for(
                all_successful, timeout=150, interval=1, description="every example successful"
            )
        except AssertionError as exc:
            details = {
                name: (rest.get(dgd_path(namespace, name)).get("status") or {}).get("conditions")
                for name in (p.split("=")[0] for p in last_pending)
            }
            raise AssertionError(f"not successful: {details}") from exc
        for name, doc in examples.items():
            obj = rest.get(dgd_path(namespace, name))
            status = obj["status"]
            assert status["observedGeneration"] == obj["metadata"]["generation"]
            assert set(status["services"]) == set(doc["spec"]["services"]), name
            for service, counts in status["services"].items():
                wanted = doc["spec"]["services"][service].get("replicas", 1)
                assert counts["componentKind"] == "Deployment"
                assert counts["readyReplicas"] == counts["availableReplicas"] == wanted, (
                    name,
                    service,
                )
            ready = next(c for c in status["conditions"] if c["type"] == "Ready")
            assert (ready["status"], ready["reason"]) == ("True", "all_resources_are_ready")
            # Readiness is the Ready condition's transition, not an Event.
            reasons = {e["reason"] for e in events_for(rest, namespace, name)}
            assert "Created" in reasons and "Ready" not in reasons
