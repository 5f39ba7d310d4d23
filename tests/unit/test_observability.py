"""The observability pack: operator metrics, PodMonitors, alert rules and dashboards.

Every metric name the operator dashboard and the alert rules read must have data in the
operator's registry after the operator has done its work (a reconcile through the real
controller, an API request through the real client, admission reviews, a failed reconcile);
tests/runtime/test_dashboards.py does the same for the serving dashboard against live
processes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from prometheus_client import generate_latest
from tests.observability import (
    CHART_DIR,
    OPERATOR_DASHBOARD,
    SERVING_DASHBOARD,
    dashboard_queries,
    metric_names,
    missing,
    rule_queries,
)
from tests.unit.kube_stub import stub_api_client
from tests.unit.reconcile_fakes import KEY, controller_for, deliver
from tests.unit.reconcile_fakes import dgd as _dgd

from dgd_operator import metrics
from dgd_operator.api.constants import COMPONENT_TYPES
from dgd_operator.builders.options import BuildOptions
from dgd_operator.codegen import dashboards
from dgd_operator.commands.operator import LogLevelPolicy
from dgd_operator.commands.render import render_text
from dgd_operator.controllerkit.kubeapi import TransientError
from dgd_operator.tools.helm import ToolError, ensure_helm

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def helm() -> Path:
    try:
        return ensure_helm()
    except ToolError as exc:
        pytest.skip(f"helm unavailable: {exc}")


# ------------------------------------------------------------------------------ PromQL names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le, model) (rate(a_bucket{x=~"$y"}[5m]))', {"a_bucket"}),
        ("max by (namespace, name) (g) == 0", {"g"}),
        ('rate(b_sum{m="n"}[1m]) / rate(b_count[1m])', {"b_sum", "b_count"}),
        ("avg by (model_name) (vllm:kv_cache_usage_perc)", {"vllm:kv_cache_usage_perc"}),
        ("histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m]))) > bool 1", {"h_bucket"}),
    ],
)
def test_metric_names_of_a_query(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_missing_names_a_query_without_data() -> None:
    text = "# TYPE a counter\na_total 1\n"
    assert missing(["rate(a_total[1m])", "rate(b_total[1m])"], text) == {
        "rate(b_total[1m])": {"b_total"}
    }


# ------------------------------------------------------------------------------ operator registry


async def _one_real_api_request() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"kind": "ConfigMap", "metadata": {"name": "c"}})

    async with stub_api_client("/api/v1/namespaces/ns/configmaps/{name}", handler) as client:
        await client.get("v1", "ConfigMap", "ns", "c")


async def _operator_exposition() -> str:
    """The operator's /metrics after real work: a converged graph, a failed reconcile, an API
    request, a multinode group out of restarts and admission reviews."""
    controller, view, client = controller_for(_dgd())
    metrics.GRAPHS.bind(lambda: [view.dgd_body] if view.dgd_body else [])
    await controller.process(KEY)
    deliver(view, client, controller)
    client.fail_with = TransientError(503, "ServiceUnavailable", "etcd leader changed")
    await controller.process(KEY)
    controller.queue.close()
    await _one_real_api_request()
    # What the group step does when a group runs out of restarts (tests/unit/test_reconcile_groups
    # drives the step itself).
    metrics.RECONCILE_ERRORS.labels(reason="group_restart_budget").inc()
    # What the admission server reports per review (the webhook helper wires these calls).
    metrics.observe_admission("validate-dgd", "CREATE", allowed=True, seconds=0.002)
    metrics.observe_admission("validate-dgd", "UPDATE", allowed=False, seconds=0.003)
    metrics.admission_failed("validate-dgd")
    return generate_latest(metrics.REGISTRY).decode()


async def test_operator_dashboard_and_alert_queries_have_data(helm: Path) -> None:
    exposition = await _operator_exposition()
    queries = dashboard_queries(OPERATOR_DASHBOARD) + rule_queries(helm)
    assert len(queries) >= 18
    assert missing(queries, exposition) == {}


async def test_graph_state_series_follow_the_watched_graphs() -> None:
    controller, view, client = controller_for(_dgd())
    bodies: list[dict[str, Any]] = []
    metrics.GRAPHS.bind(lambda: bodies)
    await controller.reconcile(KEY)
    deliver(view, client, controller)
    assert view.dgd_body is not None
    pending = {"metadata": {"namespace": "ns", "name": "new"}}
    bodies[:] = [view.dgd_body, pending]
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metrics.GRAPHS.collect()
        for s in family.samples
    }
    assert samples == {
        ("dgd_operator_graphs", (("namespace", "ns"), ("state", "successful"))): 1,
        ("dgd_operator_graphs", (("namespace", "ns"), ("state", "unknown"))): 1,
        (
            "dgd_operator_graph_ready",
            (("name", "g"), ("namespace", "ns"), ("state", "successful")),
        ): 1,
        (
            "dgd_operator_graph_ready",
            (("name", "new"), ("namespace", "ns"), ("state", "unknown")),
        ): 0,
    }
    bodies.clear()  # deleted graphs leave no series behind
    assert [s for family in metrics.GRAPHS.collect() for s in family.samples] == []


def test_admission_counters() -> None:
    def value(name: str, **labels: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    before = value("dgd_operator_webhook_denials_total", webhook="w", operation="CREATE")
    metrics.observe_admission("w", "CREATE", allowed=False, seconds=0.01)
    metrics.observe_admission("w", "CREATE", allowed=True, seconds=0.01)
    assert (
        value("dgd_operator_webhook_denials_total", webhook="w", operation="CREATE") == before + 1
    )
    assert (
        value(
            "dgd_operator_webhook_requests_total", webhook="w", operation="CREATE", allowed="true"
        )
        >= 1
    )
    assert value("dgd_operator_webhook_duration_seconds_count", webhook="w") >= 2


def test_build_info_and_process_metrics() -> None:
    from dgd_operator import __version__

    assert (
        metrics.REGISTRY.get_sample_value(
            "dgd_operator_build_info", {"version": __version__, "python_version": _python()}
        )
        == 1
    )
    assert (metrics.REGISTRY.get_sample_value("process_resident_memory_bytes") or 0) > 0


def _python() -> str:
    import platform

    return platform.python_version()


# ------------------------------------------------------------------------------ log levels


def _record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_access_lines_go_to_debug_and_are_dropped_at_info() -> None:
    record = _record("aiohttp.access", logging.INFO, '127.0.0.1 "GET /healthz HTTP/1.1" 200')
    assert LogLevelPolicy(logging.INFO).filter(record) is False
    record = _record("aiohttp.access", logging.INFO, '127.0.0.1 "POST /validate-dgd" 200')
    assert LogLevelPolicy(logging.DEBUG).filter(record) is True
    assert record.levelname == "DEBUG"


def test_a_refused_graph_is_a_warning_not_an_error() -> None:
    record = _record(
        "kopf.objects", logging.ERROR, "Webhook 'validate-dgd' failed permanently: bad tp"
    )
    assert LogLevelPolicy(logging.INFO).filter(record) is True
    assert (record.levelno, record.levelname) == (logging.WARNING, "WARNING")
    other = _record("kopf.objects", logging.ERROR, "Handler 'x' failed permanently: boom")
    assert LogLevelPolicy(logging.INFO).filter(other) is True
    assert other.levelno == logging.ERROR


# ------------------------------------------------------------------------------ chart objects


def test_dashboard_files_are_current() -> None:
    for name, text in dashboards.generated_files().items():
        assert (CHART_DIR / name).read_text() == text, f"{name} is stale"


def test_dashboards_are_valid_grafana_models() -> None:
    for path in (OPERATOR_DASHBOARD, SERVING_DASHBOARD):
        model = json.loads(path.read_text())
        ids = [panel["id"] for panel in model["panels"]]
        assert len(ids) == len(set(ids))
        for panel in model["panels"]:
            assert panel["targets"], panel["title"]
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= dashboards.GRID_WIDTH


def _render(helm: Path, *sets: str) -> list[dict[str, Any]]:
    import subprocess

    args = [str(helm), "template", "dgd", str(CHART_DIR), "-n", "dgd-system"]
    for item in sets:
        args += ["--set", item]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_monitoring_objects_are_off_by_default(helm: Path) -> None:
    kinds = {obj["kind"] for obj in _render(helm)}
    assert not kinds & {"PodMonitor", "PrometheusRule", "ServiceMonitor"}
    assert not [o for o in _render(helm) if o["metadata"]["name"].endswith("-dashboards")]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    return all(labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", ()))


def test_pod_monitors_scrape_a_metrics_port_of_every_graph_pod(helm: Path) -> None:
    """Render a disaggregated graph with a planner and check each pod's role is selected by
    exactly one PodMonitor, on a port the pod has."""
    monitors = [
        o for o in _render(helm, "metrics.podMonitors.enabled=true") if o["kind"] == "PodMonitor"
    ]
    assert {m["metadata"]["name"].rsplit("-", 1)[1] for m in monitors} == {
        "frontend", "worker", "planner", "router",
    }  # fmt: skip
    graph = yaml.safe_load((ROOT / "recipes" / "vllm-disagg-router.yaml").read_text())
    graph["spec"]["services"]["Planner"] = {
        "componentType": "planner",
        "extraPodSpec": {"mainContainer": {"image": "planner:1"}},
    }
    seen_types = set()
    outcome = render_text(yaml.safe_dump(graph), "graph", "ns", BuildOptions())
    assert outcome.errors == []
    for obj in outcome.documents:
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        template = obj["spec"]["template"]
        labels = template["metadata"]["labels"]
        ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", ())}
        chosen = [m for m in monitors if _selects(m["spec"]["selector"], labels)]
        assert len(chosen) == 1, (obj["metadata"]["name"], labels)
        assert chosen[0]["spec"]["podMetricsEndpoints"][0]["port"] in ports
        seen_types.add(labels["nvidia.com/dynamo-component-type"])
    assert seen_types == {"frontend", "worker", "planner"}
    assert set(COMPONENT_TYPES) >= seen_types


def test_pod_monitors_follow_watched_namespaces(helm: Path) -> None:
    objs = _render(helm, "metrics.podMonitors.enabled=true", "watchNamespaces={team-a,team-b}")
    for monitor in (o for o in objs if o["kind"] == "PodMonitor"):
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}


def test_dashboards_configmap_ships_every_dashboard(helm: Path) -> None:
    objs = _render(helm, "metrics.dashboards.enabled=true")
    (cm,) = [
        o
        for o in objs
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboards")
    ]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert set(cm["data"]) == {"dgd-operator.json", "dgd-graph-serving.json"}
    for name, text in cm["data"].items():
        assert json.loads(text) == json.loads((CHART_DIR / "dashboards" / name).read_text())


def test_operator_service_monitor_keeps_the_graphs_namespace_label(helm: Path) -> None:
    objs = _render(helm, "metrics.serviceMonitor.enabled=true")
    (monitor,) = [o for o in objs if o["kind"] == "ServiceMonitor"]
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
