"""Shared by the dashboard/alert tests: the metric names a PromQL query reads, the queries the
chart ships, and the sample names a `/metrics` exposition has data for."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

CHART_DIR = Path(__file__).resolve().parents[1] / "charts" / "dgd-operator"
OPERATOR_DASHBOARD = CHART_DIR / "dashboards" / "dgd-operator.json"
SERVING_DASHBOARD = CHART_DIR / "dashboards" / "dgd-graph-serving.json"

_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
     "bool", "offset", "inf", "nan"}
)  # fmt: skip
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects (function names, keywords, label names and label values
    are not metric names)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in _IDENT.finditer(text):
        rest = text[match.end() :].lstrip()
        word = match.group()
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def dashboard_queries(path: Path) -> list[str]:
    """Every query of a dashboard's panels and template variables."""
    dashboard = json.loads(path.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            inner = re.fullmatch(r"label_values\(([^,]+),.*\)", variable["definition"])
            assert inner, variable["definition"]
            queries.append(inner.group(1))
    return queries


def rule_queries(helm: Path) -> list[str]:
    """The `expr` of every rule of the chart's PrometheusRule (rendered by helm)."""
    result = subprocess.run(
        [str(helm), "template", "dgd", str(CHART_DIR), "-n", "dgd-system",
         "--set", "metrics.prometheusRule.enabled=true"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rules: list[dict[str, Any]] = [
        rule
        for doc in yaml.safe_load_all(result.stdout)
        if doc and doc["kind"] == "PrometheusRule"
        for group in doc["spec"]["groups"]
        for rule in group["rules"]
    ]
    return [str(rule["expr"]) for rule in rules]


def names_with_data(exposition: str) -> set[str]:
    """Sample names (e.g. `x_total`, `x_bucket`) that have at least one sample."""
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def missing(queries: list[str], *expositions: str) -> dict[str, set[str]]:
    """Query -> the metric names it reads that none of `expositions` has data for."""
    available: set[str] = set()
    for text in expositions:
        available |= names_with_data(text)
    gaps = {q: metric_names(q) - available for q in queries}
    return {q: names for q, names in gaps.items() if names}
