"""What the demo creates and how big a cluster it starts, from the rendered objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dgd_operator.dev.demo.graph import load_graph
from dgd_operator.dev.demo.needs import PLACEHOLDER, gpu_nodes_needed, missing_objects

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _workload(kind: str, name: str, replicas: int, gpus: int, **pod: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main"}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    container.update(pod.pop("container", {}))
    return {
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [container], **pod}}},
    }


@pytest.mark.parametrize(
    ("pods", "nodes"),
    [
        ([], 0),
        ([(1, 0)], 0),
        ([(1, 1), (1, 1)], 1),
        ([(3, 3)], 2),  # 3+3 on one node, the third on another
        ([(1, 8), (2, 8)], 3),
        ([(1, 5), (1, 4), (1, 3), (1, 4)], 2),  # largest first: 5+3, 4+4
    ],
)
def test_gpu_nodes_needed_packs_pods_largest_first(pods: list[tuple[int, int]], nodes: int) -> None:
    rendered = [_workload("Deployment", f"w{i}", r, g) for i, (r, g) in enumerate(pods)]
    assert gpu_nodes_needed(rendered, 8) == nodes


def test_a_pod_larger_than_a_node_adds_no_node() -> None:
    """It fits nowhere: it stays Pending and the demo's wait says why."""
    rendered = [_workload("StatefulSet", "big", 1, 16), _workload("Deployment", "w", 1, 2)]
    assert gpu_nodes_needed(rendered, 8) == 1


def test_missing_claims_and_secrets_are_listed_once_with_their_keys() -> None:
    rendered = [
        {"kind": "PersistentVolumeClaim", "metadata": {"name": "made"}},
        _workload(
            "Deployment",
            "a",
            1,
            0,
            volumes=[
                {"name": "c", "persistentVolumeClaim": {"claimName": "model-cache"}},
                {"name": "m", "persistentVolumeClaim": {"claimName": "made"}},
                {"name": "s", "secret": {"secretName": "opt", "optional": True}},
            ],
            container={
                "envFrom": [{"secretRef": {"name": "hf-token-secret"}}],
                "env": [
                    {"name": "T", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "tok"}}},
                    {
                        "name": "O",
                        "valueFrom": {"secretKeyRef": {"name": "o", "key": "k", "optional": True}},
                    },
                ],
            },
        ),
        _workload(
            "StatefulSet",
            "b",
            2,
            0,
            volumes=[{"name": "c", "persistentVolumeClaim": {"claimName": "model-cache"}}],
        ),
    ]
    objs = missing_objects(rendered, "ns")
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("PersistentVolumeClaim", "model-cache"),
        ("Secret", "hf-token-secret"),
        ("Secret", "keys"),
    ]
    assert all(o["metadata"]["namespace"] == "ns" for o in objs)
    assert objs[2]["stringData"] == {"tok": PLACEHOLDER}


def test_multinode_recipe_needs_three_nodes_a_cache_claim_and_a_token() -> None:
    graph = load_graph(ROOT / "recipes/llama3-70b-disagg-multinode.yaml", "demo")
    assert gpu_nodes_needed(graph.rendered, 8) == 3  # prefill 8 GPUs, decode 2 nodes x 8
    names = [o["metadata"]["name"] for o in missing_objects(graph.rendered, "demo")]
    assert names == ["model-cache", "hf-token-secret"]
