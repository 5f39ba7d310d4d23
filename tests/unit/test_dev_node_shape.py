"""Shaping the simulated nodes of `dgd dev up` and the test clusters: counts, GPUs, labels (on
every node, per node, spread in blocks), taints and extended resources."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from dgd_operator.cli import build_parser
from dgd_operator.dev.kubelet import (
    GPU_RESOURCE,
    SIMULATED_NODE_LABEL,
    NodePlan,
    node_manifest,
    node_plans,
    node_status,
    parse_node_label,
    parse_spread,
    parse_taint,
)
from dgd_operator.dev.session import node_shape

pytestmark = pytest.mark.unit


def test_default_shape_is_four_nodes_of_eight_gpus() -> None:
    plans = node_plans(4, 8)
    assert [p.name for p in plans] == ["gpu-node-0", "gpu-node-1", "gpu-node-2", "gpu-node-3"]
    assert {p.gpus for p in plans} == {8}
    assert all(not p.labels and not p.taints and not p.extended_resources for p in plans)


@pytest.mark.parametrize(
    ("count", "values", "expected"),
    [
        (4, ["a", "b"], ["a", "a", "b", "b"]),
        (5, ["a", "b"], ["a", "a", "a", "b", "b"]),
        (3, ["a", "b", "c"], ["a", "b", "c"]),
        (6, ["a", "b", "c"], ["a", "a", "b", "b", "c", "c"]),
        (2, ["x"], ["x", "x"]),
    ],
)
def test_spread_assigns_consecutive_blocks(
    count: int, values: list[str], expected: list[str]
) -> None:
    plans = node_plans(count, 8, spreads={"rack": values})
    assert [p.labels["rack"] for p in plans] == expected


def test_labels_per_node_win_over_spread_and_common_labels() -> None:
    plans = node_plans(
        3,
        8,
        labels={"pool": "p", "rack": "z"},
        spreads={"rack": ["a", "b", "c"]},
        per_node={1: {"rack": "q"}},
    )
    assert [p.labels for p in plans] == [
        {"pool": "p", "rack": "a"},
        {"pool": "p", "rack": "q"},
        {"pool": "p", "rack": "c"},
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"count": 2, "spreads": {"rack": ["a", "b", "c"]}},
        {"count": 2, "spreads": {"rack": []}},
        {"count": 2, "per_node": {2: {"rack": "a"}}},
        {"count": 251},
        {"count": 10, "first_index": 245},
        {"count": 1, "gpus_per_node": -1},
    ],
    ids=[
        "more-values-than-nodes",
        "no-values",
        "position-beyond-count",
        "too-many",
        "index-overflow",
        "negative-gpus",
    ],
)
def test_impossible_shapes_are_refused(kwargs: dict[str, Any]) -> None:
    count = kwargs.pop("count")
    gpus = kwargs.pop("gpus_per_node", 8)
    with pytest.raises(ValueError):
        node_plans(count, gpus, **kwargs)


def test_first_index_keeps_ips_and_pod_ranges_unique() -> None:
    base = node_plans(4, 8)
    extra = node_plans(2, 8, "extra", first_index=4)
    assert [p.name for p in extra] == ["extra-4", "extra-5"]
    everyone = base + extra
    assert len({p.host_ip for p in everyone}) == len({p.pod_cidr for p in everyone}) == 6


def test_node_manifest_and_status_carry_the_shape() -> None:
    (plan,) = node_plans(
        1,
        4,
        labels={"topology.kubernetes.io/rack": "a"},
        taints=[{"key": "dedicated", "value": "x", "effect": "NoSchedule"}],
        extended_resources={"rdma/ib": "8"},
    )
    node = node_manifest(plan)
    assert node["metadata"]["labels"]["topology.kubernetes.io/rack"] == "a"
    assert node["metadata"]["labels"][SIMULATED_NODE_LABEL] == "true"
    assert node["spec"]["taints"] == [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]
    status = node_status(plan)
    assert status["capacity"]["rdma/ib"] == status["allocatable"]["rdma/ib"] == "8"
    assert status["capacity"][GPU_RESOURCE] == "4"


def test_untainted_node_has_no_taints_field() -> None:
    assert "taints" not in node_manifest(node_plans(1, 8)[0])["spec"]


def test_user_labels_cannot_unmark_a_simulated_node() -> None:
    (plan,) = node_plans(1, 8, labels={SIMULATED_NODE_LABEL: "false"})
    assert node_manifest(plan)["metadata"]["labels"][SIMULATED_NODE_LABEL] == "true"


def test_plan_json_round_trip() -> None:
    (plan,) = node_plans(
        1,
        8,
        labels={"rack": "a"},
        taints=[{"key": "k", "effect": "NoExecute"}],
        extended_resources={"rdma/ib": "8"},
    )
    assert NodePlan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rack=a", (None, "rack", "a")),
        ("0,1:rack=a", ((0, 1), "rack", "a")),
        ("2:topology.kubernetes.io/rack=b", ((2,), "topology.kubernetes.io/rack", "b")),
        ("example.com/tier=gold", (None, "example.com/tier", "gold")),
        ("empty=", (None, "empty", "")),
    ],
)
def test_parse_node_label(text: str, expected: tuple[Any, str, str]) -> None:
    assert parse_node_label(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "dedicated=inference:NoSchedule",
            {"key": "dedicated", "value": "inference", "effect": "NoSchedule"},
        ),
        ("gpu:NoExecute", {"key": "gpu", "effect": "NoExecute"}),
        (
            "example.com/x=y:PreferNoSchedule",
            {"key": "example.com/x", "value": "y", "effect": "PreferNoSchedule"},
        ),
    ],
)
def test_parse_taint(text: str, expected: dict[str, str]) -> None:
    assert parse_taint(text) == expected


@pytest.mark.parametrize("text", ["dedicated=x", "dedicated=x:Sometimes", ":NoSchedule"])
def test_parse_taint_refuses_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="taint"):
        parse_taint(text)


@pytest.mark.parametrize("text", ["rack", "=a", "rack="])
def test_parse_spread_refuses_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="spread"):
        parse_spread(text)


def _up_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["dev", "up", *argv])


def test_dgd_dev_up_default_shape_is_unchanged() -> None:
    plans = node_shape(_up_args())
    assert plans == node_plans(4, 8)


def test_dgd_dev_up_shaping_flags() -> None:
    args = _up_args(
        "--nodes",
        "4",
        "--gpus-per-node",
        "2",
        "--spread",
        "rack=a,b",
        "--node-labels",
        "pool=p",
        "--node-label",
        "3:special=yes",
        "--taint",
        "dedicated=x:NoSchedule",
        "--extended-resources",
        "rdma/ib=8",
    )
    plans = node_shape(args)
    assert [p.labels for p in plans] == [
        {"pool": "p", "rack": "a"},
        {"pool": "p", "rack": "a"},
        {"pool": "p", "rack": "b"},
        {"pool": "p", "rack": "b", "special": "yes"},
    ]
    assert all(p.gpus == 2 for p in plans)
    assert all(
        p.taints == ({"key": "dedicated", "value": "x", "effect": "NoSchedule"},) for p in plans
    )
    assert all(p.extended_resources == {"rdma/ib": "8"} for p in plans)
    assert args.no_gang_scheduling is False
    assert _up_args("--no-gang-scheduling").no_gang_scheduling is True
