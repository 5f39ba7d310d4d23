"""The Grafana dashboards shipped in the chart, built as data: one source for the JSON files.

Two dashboards: the operator (graphs by state, not-Ready graphs, reconciles, webhook, API
traffic, process) and graph serving (request rates, TTFT, ITL, sequence lengths, tokens/s,
worker load and KV cache usage). Every query uses only metric names our processes export; a
test checks each one against live `/metrics`. Regenerate with

    python -m dgd_operator.codegen.dashboards --write --chart-dir charts/dgd-operator
    python -m dgd_operator.codegen.dashboards --check --chart-dir ...   # exit 1 if stale
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DASHBOARD_DIR = "dashboards"
WINDOW = "$__rate_interval"
GRID_WIDTH = 24
PANEL_HEIGHT = 8


@dataclass(frozen=True)
class Panel:
    """One time-series (or table) panel: a title, its queries (legend per query) and a unit."""

    title: str
    queries: tuple[tuple[str, str], ...]
    unit: str = "short"
    width: int = 12
    kind: str = "timeseries"
    description: str = ""


@dataclass(frozen=True)
class Dashboard:
    """A dashboard: uid, title, tags, template variables and rows of panels."""

    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[tuple[str, str], ...] = field(default=())


def _quantile(q: float, metric: str, by: str = "model") -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{SEL}}[{WINDOW}])))"


def _mean(metric: str, by: str = "model") -> str:
    return (
        f"sum by ({by}) (rate({metric}_sum{{SEL}}[{WINDOW}]))"
        f" / sum by ({by}) (rate({metric}_count{{SEL}}[{WINDOW}]))"
    )


OPERATOR = Dashboard(
    uid="dgd-operator",
    title="dgd operator",
    description="The dgd operator: graphs by state, reconciles, admission webhook, API traffic.",
    variables=(("job", "dgd_operator_build_info"),),
    panels=(
        Panel(
            "Graphs by state",
            (("sum by (state) (dgd_operator_graphs{SEL})", "{{state}}"),),
            description="DynamoGraphDeployments watched by the operator, by status.state.",
        ),
        Panel(
            "Graphs not Ready",
            (("dgd_operator_graph_ready{SEL} == 0", "{{namespace}}/{{name}} ({{state}})"),),
            description="One series per graph whose Ready condition is not True.",
        ),
        Panel(
            "Reconciles by result",
            (
                (
                    f"sum by (result) (rate(dgd_operator_reconciles_total{{SEL}}[{WINDOW}]))",
                    "{{result}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Reconcile errors by reason",
            (
                (
                    f"sum by (reason) (rate(dgd_operator_reconcile_errors_total{{SEL}}[{WINDOW}]))",
                    "{{reason}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Reconcile duration",
            (
                (_quantile(0.5, "dgd_operator_reconcile_duration_seconds", "job"), "p50"),
                (_quantile(0.99, "dgd_operator_reconcile_duration_seconds", "job"), "p99"),
            ),
            unit="s",
        ),
        Panel(
            "Work queue depth",
            (("sum(dgd_operator_queue_depth{SEL})", "queued"),),
        ),
        Panel(
            "Webhook requests",
            (
                (
                    "sum by (webhook, allowed) "
                    f"(rate(dgd_operator_webhook_requests_total{{SEL}}[{WINDOW}]))",
                    "{{webhook}} allowed={{allowed}}",
                ),
                (
                    f"sum by (webhook) (rate(dgd_operator_webhook_errors_total{{SEL}}[{WINDOW}]))",
                    "{{webhook}} errors",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Webhook denials",
            (
                (
                    "sum by (webhook, operation) "
                    f"(rate(dgd_operator_webhook_denials_total{{SEL}}[{WINDOW}]))",
                    "{{webhook}} {{operation}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Webhook latency p99",
            ((_quantile(0.99, "dgd_operator_webhook_duration_seconds", "webhook"), "{{webhook}}"),),
            unit="s",
        ),
        Panel(
            "Kubernetes API requests",
            (
                (
                    "sum by (verb, resource) "
                    f"(rate(dgd_operator_api_requests_total{{SEL}}[{WINDOW}]))",
                    "{{verb}} {{resource}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Managed objects by kind",
            (("sum by (kind) (dgd_operator_managed_objects{SEL})", "{{kind}}"),),
        ),
        Panel(
            "Operator process",
            (
                ("process_resident_memory_bytes{SEL}", "RSS {{instance}}"),
                (f"rate(process_cpu_seconds_total{{SEL}}[{WINDOW}])", "CPU {{instance}}"),
            ),
            unit="short",
        ),
        Panel(
            "Running versions",
            (("sum by (version) (dgd_operator_build_info{SEL})", "{{version}}"),),
            kind="stat",
        ),
    ),
)

SERVING = Dashboard(
    uid="dgd-graph-serving",
    title="dgd graph serving",
    description=(
        "Requests through the frontends of DynamoGraphDeployments and the load of their "
        "workers (dynamo_frontend_*, dynamo_component_* and the engine's vllm:* metrics)."
    ),
    variables=(("namespace", "dynamo_frontend_requests_total"),),
    panels=(
        Panel(
            "Request rate by status",
            (
                (
                    "sum by (model, status) "
                    f"(rate(dynamo_frontend_requests_total{{SEL}}[{WINDOW}]))",
                    "{{model}} {{status}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Requests in flight",
            (("sum by (model) (dynamo_frontend_inflight_requests{SEL})", "{{model}}"),),
        ),
        Panel(
            "Time to first token",
            (
                (_quantile(0.5, "dynamo_frontend_time_to_first_token_seconds"), "p50 {{model}}"),
                (_quantile(0.99, "dynamo_frontend_time_to_first_token_seconds"), "p99 {{model}}"),
            ),
            unit="s",
        ),
        Panel(
            "Inter-token latency",
            (
                (_quantile(0.5, "dynamo_frontend_inter_token_latency_seconds"), "p50 {{model}}"),
                (_quantile(0.99, "dynamo_frontend_inter_token_latency_seconds"), "p99 {{model}}"),
            ),
            unit="s",
        ),
        Panel(
            "Request duration",
            (
                (_quantile(0.5, "dynamo_frontend_request_duration_seconds"), "p50 {{model}}"),
                (_quantile(0.99, "dynamo_frontend_request_duration_seconds"), "p99 {{model}}"),
            ),
            unit="s",
        ),
        Panel(
            "Output tokens per second",
            (
                (
                    f"sum by (model) (rate(dynamo_frontend_output_tokens_total{{SEL}}[{WINDOW}]))",
                    "{{model}}",
                ),
            ),
            unit="short",
        ),
        Panel(
            "Mean sequence lengths",
            (
                (_mean("dynamo_frontend_input_sequence_tokens"), "input {{model}}"),
                (_mean("dynamo_frontend_output_sequence_tokens"), "output {{model}}"),
            ),
        ),
        Panel(
            "Models with live workers",
            (("max by (model) (dynamo_frontend_model_ready{SEL})", "{{model}}"),),
        ),
        Panel(
            "Worker requests and errors",
            (
                (
                    "sum by (dynamo_component) "
                    f"(rate(dynamo_component_requests_total{{SEL}}[{WINDOW}]))",
                    "{{dynamo_component}} requests",
                ),
                (
                    "sum by (dynamo_component) "
                    f"(rate(dynamo_component_errors_total{{SEL}}[{WINDOW}]))",
                    "{{dynamo_component}} errors",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Worker requests in flight",
            (
                (
                    "sum by (dynamo_component) (dynamo_component_inflight_requests{SEL})",
                    "{{dynamo_component}}",
                ),
            ),
        ),
        Panel(
            "KV cache usage",
            (("avg by (model_name) (vllm:kv_cache_usage_perc{SEL})", "{{model_name}}"),),
            unit="percentunit",
            description="Fraction of KV cache blocks in use, averaged over a model's workers.",
        ),
        Panel(
            "Engine queue",
            (
                ("sum by (model_name) (vllm:num_requests_running{SEL})", "running {{model_name}}"),
                ("sum by (model_name) (vllm:num_requests_waiting{SEL})", "waiting {{model_name}}"),
            ),
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (OPERATOR, SERVING)


def _selector(dashboard: Dashboard) -> str:
    return ", ".join(f'{name}=~"${name}"' for name, _ in dashboard.variables)


def build_dashboard(dashboard: Dashboard) -> dict[str, Any]:
    """The Grafana dashboard model (schema 39) of `dashboard`, with a Prometheus datasource
    variable and one query variable per entry of `variables`."""
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    selector = _selector(dashboard)
    panels: list[dict[str, Any]] = []
    x = y = 0
    for number, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > GRID_WIDTH:
            x, y = 0, y + PANEL_HEIGHT
        targets = [
            {
                "refId": chr(ord("A") + i),
                "datasource": datasource,
                "expr": expr.replace("{SEL}", "{" + selector + "}"),
                "legendFormat": legend,
            }
            for i, (expr, legend) in enumerate(panel.queries)
        ]
        panels.append(
            {
                "id": number,
                "type": panel.kind,
                "title": panel.title,
                "description": panel.description,
                "datasource": datasource,
                "gridPos": {"h": PANEL_HEIGHT, "w": panel.width, "x": x, "y": y},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "options": {},
                "targets": targets,
            }
        )
        x += panel.width
    variables: list[dict[str, Any]] = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        }
    ]
    variables += [
        {
            "name": name,
            "label": name,
            "type": "query",
            "datasource": datasource,
            "query": {"query": f"label_values({metric}, {name})", "refId": "variable"},
            "definition": f"label_values({metric}, {name})",
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "current": {},
            "refresh": 2,
            "hide": 0,
        }
        for name, metric in dashboard.variables
    ]
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["dgd", "dynamo"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": variables},
        "panels": panels,
    }


def generated_files() -> dict[str, str]:
    """Map each file (relative to the chart directory) to its expected text."""
    return {
        f"{DASHBOARD_DIR}/{d.uid}.json": json.dumps(build_dashboard(d), indent=2) + "\n"
        for d in DASHBOARDS
    }


def main(argv: list[str] | None = None) -> int:
    """Write or check the dashboard files; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m dgd_operator.codegen.dashboards",
        description="Generate the Grafana dashboards of the dgd-operator chart.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate the files")
    mode.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    parser.add_argument("--chart-dir", type=Path, required=True, metavar="DIR")
    args = parser.parse_args(argv)
    stale = 0
    for name, text in generated_files().items():
        path: Path = args.chart_dir / name
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
        elif not path.is_file() or path.read_text() != text:
            print(f"{path} is stale; regenerate it", file=sys.stderr)
            stale += 1
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
