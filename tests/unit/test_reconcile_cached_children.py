"""The watch cache keeps children without their pod template specs and ConfigMap data
(`view.cached_child`): a restarted operator must still find every fixture graph converged."""

from __future__ import annotations

import asyncio
import copy

from benchmarks.reconcile_cpu import controller, converged, fixture_graphs, reconcile_all

from dgd_operator.reconcile.view import cached_child


def test_cached_child_drops_only_the_pod_spec_and_config_data() -> None:
    workload = {
        "kind": "Deployment",
        "metadata": {"name": "w", "annotations": {"a": "1"}},
        "spec": {
            "replicas": 2,
            "template": {"metadata": {"labels": {"l": "v"}}, "spec": {"containers": []}},
        },
        "status": {"readyReplicas": 2},
    }
    kept = cached_child(workload)
    assert kept == {
        **workload,
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"l": "v"}}}},
    }
    assert "spec" in workload["spec"]["template"]  # the delivered object is left alone
    config = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}
    assert cached_child(config) == {"kind": "ConfigMap", "metadata": {"name": "c"}}
    service = {"kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": []}}
    assert cached_child(service) is service


def test_every_fixture_graph_stays_converged_on_cached_children() -> None:
    api, view, keys = converged(fixture_graphs())
    statuses = {name: copy.deepcopy(body.get("status")) for name, body in api.dgds.items()}
    view.by_graph = {
        graph: [dict(cached_child(obj)) for obj in objs] for graph, objs in view.by_graph.items()
    }
    api.writes = 0
    asyncio.run(reconcile_all(controller(api, view), keys))
    assert api.writes == 0
    assert {name: body.get("status") for name, body in api.dgds.items()} == statuses
