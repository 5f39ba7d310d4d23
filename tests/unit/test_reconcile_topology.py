"""The `TopologyLevelsAvailable` condition: does some node carry each packDomain's label?"""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.reconcile_fakes import KEY, FakeKube, controller_for
from tests.unit.reconcile_fakes import dgd as _dgd

from dgd_operator.builders.placement import PackDomain
from dgd_operator.controllerkit.kubeapi import ApiError
from dgd_operator.reconcile.controller import Controller
from dgd_operator.reconcile.steps.placement import topology_levels_condition

pytestmark = pytest.mark.unit

RACK = PackDomain("spec.topologyConstraint.packDomain", "rack", "topology.kubernetes.io/rack")
HALL = PackDomain("spec.services.w.topologyConstraint.packDomain", "hall", None)


@pytest.mark.parametrize(
    ("domains", "presence", "status", "reason", "text"),
    [
        ([RACK], {RACK.key: (True, "")}, "True", "AllTopologyLevelsAvailable", "rack (topology"),
        ([RACK], {RACK.key: (False, "")}, "False", "TopologyLevelsUnavailable", "no node carries"),
        ([RACK, HALL], {RACK.key: (True, "")}, "False", "TopologyDefinitionNotFound", "'hall'"),
        ([RACK], {RACK.key: (None, "forbidden")}, "Unknown", "TopologyConditionPending", "forbidden"),
    ],
)  # fmt: skip
def test_topology_levels_condition(
    domains: list[PackDomain],
    presence: dict[str, tuple[bool | None, str]],
    status: str,
    reason: str,
    text: str,
) -> None:
    condition = topology_levels_condition(domains, presence, 4)
    assert condition["type"] == "TopologyLevelsAvailable"
    assert (condition["status"], condition["reason"]) == (status, reason)
    assert text in condition["message"]
    assert condition["observedGeneration"] == 4


def _packed() -> dict[str, Any]:
    body = _dgd()
    body["spec"]["topologyConstraint"] = {"topologyProfile": "p", "packDomain": "rack"}
    return body


def _condition(controller: Controller) -> dict[str, Any] | None:
    status = controller.state.graphs[KEY].written_status or {}
    return next(
        (c for c in status.get("conditions", []) if c["type"] == "TopologyLevelsAvailable"), None
    )


async def test_nodes_are_listed_once_per_label_and_checked_again_while_missing() -> None:
    controller, _, client = controller_for(_packed())
    await controller.reconcile(KEY)
    condition = _condition(controller)
    assert condition is not None and condition["reason"] == "TopologyLevelsUnavailable"
    assert client.calls.count(("list", "Node")) == 1
    assert KEY in controller.queue._timers  # looked at again later
    await controller.reconcile(KEY)
    assert client.calls.count(("list", "Node")) == 1  # cached
    client.existing[("Node", "n1")] = {"metadata": {"name": "n1"}}
    controller.state.node_labels.clear()  # the cache expired
    controller.state.graphs[KEY].status_written_at = float("-inf")  # no write coalescing
    await controller.reconcile(KEY)
    condition = _condition(controller)
    assert condition is not None and condition["status"] == "True"


async def test_a_refused_node_list_leaves_the_condition_unknown() -> None:
    class Refusing(FakeKube):
        async def list(self, api_version: str, kind: str, namespace: str | None, **kw: Any) -> Any:
            if kind == "Node":
                raise ApiError(403, "Forbidden", "nodes is forbidden")
            return await super().list(api_version, kind, namespace, **kw)

    controller, _, _ = controller_for(_packed(), client=Refusing())
    await controller.reconcile(KEY)
    condition = _condition(controller)
    assert condition is not None and condition["status"] == "Unknown"
    assert "nodes is forbidden" in condition["message"]


async def test_graphs_without_pack_domains_get_no_condition_and_no_node_list() -> None:
    controller, _, client = controller_for(_dgd())
    await controller.reconcile(KEY)
    assert _condition(controller) is None
    assert ("list", "Node") not in client.calls
