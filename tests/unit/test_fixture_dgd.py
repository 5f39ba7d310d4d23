"""The fluent DGD builder used by tests (tests/fixtures/dgd.py)."""

from __future__ import annotations

import pytest
from tests.fixtures.dgd import DGD

pytestmark = pytest.mark.unit


def test_chained_setters_apply_to_the_service_added_last() -> None:
    doc = (
        DGD("g", namespace="ns")
        .backend("vllm")
        .frontend()
        .worker("decode", sub="decode", replicas=2)
        .multinode(2)
        .gpus(8)
        .envs(A="1")
        .engine("vllm", "--tensor-parallel-size", "16")
        .build()
    )
    assert doc["metadata"] == {"name": "g", "namespace": "ns"}
    assert doc["spec"]["backendFramework"] == "vllm"
    assert doc["spec"]["services"]["Frontend"] == {"componentType": "frontend", "replicas": 1}
    assert doc["spec"]["services"]["decode"] == {
        "componentType": "worker",
        "subComponentType": "decode",
        "replicas": 2,
        "multinode": {"nodeCount": 2},
        "resources": {"limits": {"gpu": "8"}},
        "envs": [{"name": "A", "value": "1"}],
        "extraPodSpec": {
            "mainContainer": {
                "image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.8.1",
                "command": ["python3", "-m", "dynamo.vllm"],
                "args": ["--tensor-parallel-size", "16"],
            }
        },
    }


def test_build_returns_independent_copies_and_model_parses() -> None:
    graph = DGD("g").worker("w").gpus(1)
    first = graph.build()
    first["spec"]["services"]["w"]["replicas"] = 9
    assert graph.build()["spec"]["services"]["w"]["replicas"] == 1
    model = graph.model()
    assert model.spec.services["w"].component_type == "worker"


def test_service_setters_need_a_service() -> None:
    with pytest.raises(ValueError, match="add a service first"):
        DGD("g").gpus(1)
