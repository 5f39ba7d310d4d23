"""Prometheus metrics of the operator process.

All series live in a dedicated registry (not prometheus-client's global one), so other
libraries' series never mix in. The registry is module-global: operators run in one process
(as the integration tests do) share it, so their counters add up.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dgd_operator import __version__

REGISTRY = CollectorRegistry(auto_describe=True)
# process_* (CPU, memory, open fds, start time) and python_info, as every Go operator exports.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

BUILD_INFO = Gauge(
    "dgd_operator_build_info",
    "Always 1; the labels name the running operator's version and Python.",
    ["version", "python_version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(version=__version__, python_version=platform.python_version()).set(1)

API_REQUESTS = Counter(
    "dgd_operator_api_requests",
    "Kubernetes API requests sent by the operator's client, by verb and resource.",
    ["verb", "resource"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "dgd_operator_reconcile_duration_seconds",
    "Wall time of one DynamoGraphDeployment reconcile.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "dgd_operator_reconcile_errors",
    "Reconciles that ended in an error, by reason (invalid, conflict, transient, unexpected).",
    ["reason"],
    registry=REGISTRY,
)
MANAGED_OBJECTS = Gauge(
    "dgd_operator_managed_objects",
    "Objects the operator currently tracks, by kind (DGDs and their children).",
    ["kind"],
    registry=REGISTRY,
)
RECONCILES = Counter(
    "dgd_operator_reconciles",
    "Finished DynamoGraphDeployment reconciles, by result (success, conflict, transient, "
    "unexpected).",
    ["result"],
    registry=REGISTRY,
)
WEBHOOK_REQUESTS = Counter(
    "dgd_operator_webhook_requests",
    "Admission reviews answered, by webhook, operation and whether the object was allowed.",
    ["webhook", "operation", "allowed"],
    registry=REGISTRY,
)
WEBHOOK_DENIALS = Counter(
    "dgd_operator_webhook_denials",
    "Admission reviews that refused the object, by webhook and operation.",
    ["webhook", "operation"],
    registry=REGISTRY,
)
WEBHOOK_ERRORS = Counter(
    "dgd_operator_webhook_errors",
    "Admission reviews the webhook failed to answer (an exception, a malformed review).",
    ["webhook"],
    registry=REGISTRY,
)
WEBHOOK_DURATION = Histogram(
    "dgd_operator_webhook_duration_seconds",
    "Time to answer one admission review, by webhook.",
    ["webhook"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
LEADER = Gauge(
    "dgd_operator_leader",
    "1 while this replica holds the leader-election Lease and reconciles, else 0 (a standby "
    "serving only the webhooks).",
    registry=REGISTRY,
)
LEADER_TRANSITIONS = Counter(
    "dgd_operator_leader_acquisitions",
    "Times this replica took the leader-election Lease.",
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "dgd_operator_queue_depth",
    "DGDs waiting to be reconciled.",
    registry=REGISTRY,
)


class ManagedObjectsGauge:
    """Refreshes `MANAGED_OBJECTS` from a count of watched objects, at most once per interval;
    kinds that disappeared drop to zero instead of keeping their last value."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._at = float("-inf")
        self._kinds: set[str] = set()

    def refresh(self, counts: Callable[[], dict[str, int]]) -> None:
        """Set the gauge from `counts()` unless it was set less than `interval` seconds ago."""
        now = time.monotonic()
        if now - self._at < self.interval:
            return
        self._at = now
        current = counts()
        for kind in set(current) | self._kinds:
            MANAGED_OBJECTS.labels(kind=kind).set(current.get(kind, 0))
        self._kinds |= set(current)


def observe_admission(webhook: str, operation: str, *, allowed: bool, seconds: float) -> None:
    """Count one answered admission review of `webhook` (e.g. "validate-dgd") for `operation`
    (CREATE, UPDATE, ...), a denial when not `allowed`, and how long the answer took."""
    WEBHOOK_REQUESTS.labels(
        webhook=webhook, operation=operation, allowed="true" if allowed else "false"
    ).inc()
    if not allowed:
        WEBHOOK_DENIALS.labels(webhook=webhook, operation=operation).inc()
    WEBHOOK_DURATION.labels(webhook=webhook).observe(seconds)


def admission_failed(webhook: str) -> None:
    """Count a review `webhook` could not answer (the API server then applies failurePolicy)."""
    WEBHOOK_ERRORS.labels(webhook=webhook).inc()


def graph_state(body: Mapping[str, Any]) -> tuple[str, bool]:
    """(`status.state`, whether the Ready condition is True) of a DGD body; "unknown" before the
    operator first wrote a status."""
    status = body.get("status") or {}
    state = str(status.get("state") or "unknown")
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )
    return state, ready


class GraphStatusCollector(Collector):
    """`dgd_operator_graphs{namespace,state}` and `dgd_operator_graph_ready{namespace,name,state}`,
    read at scrape time from the watched DGDs: one series per graph (bounded by the number of
    graphs), and a deleted graph's series disappear with it instead of freezing."""

    def __init__(self) -> None:
        self._source: Callable[[], Iterable[Mapping[str, Any]]] = tuple

    def bind(self, source: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        """Read the DGD bodies from `source()` on every scrape."""
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield both families from the current DGD bodies."""
        counts = GaugeMetricFamily(
            "dgd_operator_graphs",
            "DynamoGraphDeployments watched by the operator, by namespace and status.state.",
            labels=["namespace", "state"],
        )
        ready = GaugeMetricFamily(
            "dgd_operator_graph_ready",
            "1 when the DynamoGraphDeployment's Ready condition is True, else 0.",
            labels=["namespace", "name", "state"],
        )
        per_state: dict[tuple[str, str], int] = {}
        seen: set[tuple[str, str]] = set()
        for body in self._source():
            meta = body.get("metadata") or {}
            ident = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
            if ident in seen:  # a live body and one being deleted share the key
                continue
            seen.add(ident)
            state, is_ready = graph_state(body)
            per_state[(ident[0], state)] = per_state.get((ident[0], state), 0) + 1
            ready.add_metric([ident[0], ident[1], state], 1.0 if is_ready else 0.0)
        for (namespace, state), count in sorted(per_state.items()):
            counts.add_metric([namespace, state], count)
        yield counts
        yield ready


GRAPHS = GraphStatusCollector()
REGISTRY.register(GRAPHS)


def serve_metrics(port: int, address: str) -> None:
    """Expose `REGISTRY` over HTTP on `address:port` from a daemon thread (port 0 = off).

    The `_created` series of counters and histograms are switched off first (process-wide: this
    is the operator's own process), as they double the series count for no query's benefit."""
    if port:
        disable_created_metrics()  # type: ignore[no-untyped-call]
        start_http_server(port, addr=address, registry=REGISTRY)


def api_request_count(verbs: frozenset[str] | None = None) -> float:
    """Total API requests counted so far, optionally only for `verbs` (for tests and benches)."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name != "dgd_operator_api_requests":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total") and (verbs is None or sample.labels["verb"] in verbs):
                total += sample.value
    return total


WRITE_VERBS = frozenset({"create", "apply", "patch", "update", "delete"})
