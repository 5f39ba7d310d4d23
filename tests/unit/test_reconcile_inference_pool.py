"""InferencePool API discovery in the reconcile: a pool only where the API is served, and a
status condition saying which."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.unit.reconcile_fakes import FakeKube, controller_for, dgd

from dgd_operator.reconcile.steps.inference_pool import serves_inference_pools

pytestmark = pytest.mark.unit

GRAPH = Path(__file__).parents[1] / "fixtures" / "graphs" / "gaie-epp.yaml"
DISCOVERY = "/apis/inference.networking.k8s.io/v1"


def _graph() -> dict[str, Any]:
    doc = yaml.safe_load(GRAPH.read_text())
    doc["metadata"].update(name="g", namespace="ns", uid="u1", generation=1)
    return dict(doc)


def _condition(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "InferencePoolReady")


@pytest.mark.parametrize("served", [False, True])
async def test_the_pool_is_applied_only_where_the_api_is_served(served: bool) -> None:
    client = FakeKube()
    if served:
        client.discovery[DISCOVERY] = {"resources": [{"name": "inferencepools"}]}
    controller, _, client = controller_for(_graph(), client=client)
    await controller.reconcile(("ns", "g"))
    kinds = {obj["kind"] for obj in client.applied}
    assert ("InferencePool" in kinds) is served
    assert ("get", DISCOVERY) in client.calls
    status = controller.state.graphs[("ns", "g")].written_status
    assert status is not None
    condition = _condition(status)
    assert condition["status"] == ("True" if served else "False")
    if not served:
        assert condition["reason"] == "InferencePoolAPIUnavailable"
        assert "Gateway API Inference Extension" in condition["message"]


async def test_discovery_is_cached_and_skipped_for_graphs_without_an_epp() -> None:
    controller, _, client = controller_for(_graph())
    await controller.reconcile(("ns", "g"))
    await controller.reconcile(("ns", "g"))
    assert client.calls.count(("get", DISCOVERY)) == 1
    plain, _, plain_client = controller_for(dgd())
    await plain.reconcile(("ns", "g"))
    assert ("get", DISCOVERY) not in plain_client.calls


def test_discovery_document() -> None:
    assert serves_inference_pools({"resources": [{"name": "inferencepools"}]})
    assert not serves_inference_pools({"resources": [{"name": "inferenceobjectives"}]})
    assert not serves_inference_pools(None)
