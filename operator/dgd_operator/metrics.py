"""Prometheus metrics of the operator process.

All series live in a dedicated registry (not prometheus-client's global one), so other
libraries' series never mix in. The registry is module-global: operators run in one process
(as the integration tests do) share it, so their counters add up.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

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


def serve_metrics(port: int, address: str) -> None:
    """Expose `REGISTRY` over HTTP on `address:port` from a daemon thread (port 0 = off)."""
    if port:
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
