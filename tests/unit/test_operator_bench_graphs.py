"""The graphs the operator benchmarks write: the same graph at either API version, and the
statuses `operator_api_costs.py` applies in the operator's place."""

from __future__ import annotations

import pytest
from benchmarks.operator_api_costs import graph_status
from benchmarks.operator_scale import DGD_APIS, bench_dgd

from dgd_operator.api.conversion import convert
from dgd_operator.api.validation import parse_dgd, validate_dgd
from dgd_operator.builders.graph import build_graph
from dgd_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

NAMESPACE = "bench"


def children(api: str) -> list[dict[str, object]]:
    dgd = bench_dgd("g-0001", NAMESPACE, api)
    return build_graph(parse_dgd(dgd), NAMESPACE, OperatorSettings().to_build_options())


@pytest.mark.parametrize("api", sorted(DGD_APIS))
def test_the_graph_is_valid_at_its_version(api: str) -> None:
    dgd = bench_dgd("g-0001", NAMESPACE, api)
    assert dgd["apiVersion"] == DGD_APIS[api]
    result = validate_dgd(dgd, creating=True, images=False, keep_hub=False)
    assert not result.errors


def test_both_versions_render_the_same_children() -> None:
    assert children("v1beta1") == children("v1alpha1")
    assert len(children("v1beta1")) == 11


def test_a_v1beta1_author_writes_no_v1alpha1_carry_over() -> None:
    beta = bench_dgd("g-0001", NAMESPACE, "v1beta1")
    assert "annotations" not in beta["metadata"]
    # and it reads back at v1alpha1 as the v1alpha1 graph's spec
    alpha = bench_dgd("g-0001", NAMESPACE, "v1alpha1")
    down = convert(beta, "v1alpha1")
    assert set(down["spec"]["services"]) == set(alpha["spec"]["services"])


@pytest.mark.parametrize(
    ("ready", "state", "condition"), [(False, "pending", "False"), (True, "successful", "True")]
)
def test_the_applied_statuses_are_the_operators(ready: bool, state: str, condition: str) -> None:
    dgd = bench_dgd("g-0001", NAMESPACE, "v1beta1")
    status = graph_status(dgd, NAMESPACE, ready=ready)
    assert status["state"] == state
    assert [c["status"] for c in status["conditions"] if c["type"] == "Ready"] == [condition]
    assert set(status["components"]) == {
        "Frontend",
        "Planner",
        "VllmDecodeWorker",
        "VllmPrefillWorker",
    }
