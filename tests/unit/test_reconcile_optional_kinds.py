"""Children of optional APIs (InferencePool, Istio) are pruned when a spec change drops them.

They are not watched (the API may not be served), so the reconcile lists them by the graph's
label, once per spec change, and deletes those it owns and no longer wants.
"""

from __future__ import annotations

import copy

import pytest
from tests.fixtures.catalog import load_graph
from tests.unit.reconcile_fakes import KEY, controller_for, deliver

from dgd_operator.api.constants import INFERENCE_POOL_GROUP_VERSION, INFERENCE_POOL_KIND

pytestmark = pytest.mark.unit

POOLS = {f"/apis/{INFERENCE_POOL_GROUP_VERSION}": {"resources": [{"name": "inferencepools"}]}}


def gateway_graph() -> dict:  # type: ignore[type-arg]
    body = load_graph("gaie-epp")
    body["metadata"].update(name="g", namespace="ns", uid="u1", generation=1, resourceVersion="1")
    return body


async def test_a_dropped_endpoint_picker_loses_its_inference_pool_after_the_spec_change() -> None:
    controller, view, client = controller_for(gateway_graph())
    client.discovery.update(POOLS)
    await controller.reconcile(KEY)
    [pool] = [o for o in client.applied if o["kind"] == INFERENCE_POOL_KIND]
    deliver(view, client, controller)
    # Not watched: the pool lives in the API server only, never in the watch cache.
    view.objects = {k: v for k, v in view.objects.items() if k[1] != INFERENCE_POOL_KIND}
    live_pool = copy.deepcopy(pool)
    live_pool["metadata"]["ownerReferences"] = [{"uid": "u1"}]
    client.existing[(INFERENCE_POOL_KIND, pool["metadata"]["name"])] = live_pool

    client.calls.clear()
    await controller.reconcile(KEY)  # nothing changed: no list, no write
    assert ("list", INFERENCE_POOL_KIND) not in client.calls
    assert client.writes() == []

    assert view.dgd_body is not None
    picker = next(
        name for name, svc in view.dgd_body["spec"]["services"].items()
        if svc.get("componentType") == "epp"
    )  # fmt: skip
    del view.dgd_body["spec"]["services"][picker]
    view.dgd_body["metadata"]["generation"] = 2
    client.calls.clear()
    await controller.reconcile(KEY)
    assert ("list", INFERENCE_POOL_KIND) in client.calls
    assert ("delete", pool["metadata"]["name"]) in client.calls


async def test_an_operator_start_lists_no_optional_kinds() -> None:
    controller, _, client = controller_for(gateway_graph())
    client.discovery.update(POOLS)
    await controller.reconcile(KEY)
    assert ("list", INFERENCE_POOL_KIND) not in client.calls
