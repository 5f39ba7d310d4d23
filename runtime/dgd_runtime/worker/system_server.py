"""A worker's system status server: ``/live``, ``/health``, ``/metrics`` (Dynamo's paths).

``/live`` answers 200 while the process runs; ``/health`` answers 200 ``{"status": "ready"}``
once the worker is registered and its engine ready, else 503 ``notready`` (so a pod is
taken out of rotation while it starts or drains). Metrics are collected at scrape time from
the worker's counters, so serving requests costs nothing extra. The engine decides which
engine metrics appear (:class:`~dgd_runtime.engines.base.PublishesLoadMetrics` names, or its
own :class:`~dgd_runtime.engines.base.MetricsSource`); nothing here is specific to one engine.

The server runs in a thread of its own, not on the worker's event loop: under load that loop
is busy with the engine's output handling and the request plane (with vLLM at concurrency 32
a scrape queued behind it took 6-16 s), and a probe that waits on it makes a busy worker look
dead. What the handlers read is safe from another thread: single attribute reads (ints,
booleans, lengths) and Prometheus collection, which is built for it (``prometheus_client``'s
own server collects from a thread too).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dgd_runtime.engines.base import (
    EngineMetricNames,
    EngineStats,
    MetricsSource,
    PublishesLoadMetrics,
)
from dgd_runtime.transport.server import StreamRecord
from dgd_runtime.worker.service import ReleasesTransfers

if TYPE_CHECKING:
    from dgd_runtime.worker.service import Worker

log = logging.getLogger(__name__)

CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"
JSON = "application/json"
_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
_ITL_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
)


class WorkerCollector(Collector):
    """Prometheus view of one worker: Dynamo's component metrics plus the engine's own."""

    def __init__(self, worker: Worker, engine_name: str) -> None:
        """Collect from ``worker``."""
        self._worker = worker
        self._engine_name = engine_name

    def collect(self) -> Iterator[Metric]:
        """Yield the current metric families."""
        w = self._worker
        inst = w.instance
        names = ["dynamo_namespace", "dynamo_component", "dynamo_endpoint", "model"]
        vals = [inst.namespace, inst.component, inst.endpoint, w.card.name]
        server = w.server
        counters = server.counters if server is not None else None

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            m = CounterMetricFamily(name, doc, labels=names)
            m.add_metric(vals, value)
            return m

        def gauge(
            name: str, doc: str, value: float, labels: list[str], lvals: list[str]
        ) -> GaugeMetricFamily:
            m = GaugeMetricFamily(name, doc, labels=labels)
            m.add_metric(lvals, value)
            return m

        yield counter(
            "dynamo_component_requests",
            "Requests received by the worker endpoint",
            counters.requests_total if counters else 0,
        )
        yield counter(
            "dynamo_component_cancellation",
            "Requests cancelled by the client",
            counters.cancellations_total if counters else 0,
        )
        yield counter(
            "dynamo_component_errors",
            "Requests that ended in an error",
            counters.errors_total if counters else 0,
        )
        yield counter(
            "dynamo_component_response_bytes",
            "Bytes of streamed responses",
            counters.bytes_sent if counters else 0,
        )
        yield gauge(
            "dynamo_component_inflight_requests",
            "Requests being served",
            server.inflight if server else 0,
            names,
            vals,
        )
        yield gauge(
            "dynamo_component_uptime_seconds",
            "Seconds since the worker started",
            time.time() - w.started_at,
            names,
            vals,
        )
        engine = w.engine
        if isinstance(engine, ReleasesTransfers):
            yield gauge(
                "dynamo_component_disagg_held_transfers",
                "Prefills whose KV blocks are held for a decode worker to pick up",
                engine.held_transfers,
                names,
                vals,
            )
        if isinstance(engine, PublishesLoadMetrics):
            yield from _load_metrics(engine.metric_names, engine.stats(), self._engine_name, w)
        if isinstance(engine, MetricsSource):
            yield from engine.collect_metrics()


def _load_metrics(
    names: EngineMetricNames, st: EngineStats, engine_name: str, w: Worker
) -> Iterator[Metric]:
    """The engine's load counters under the names the engine chose."""
    labels = ["engine", "model_name"]
    values = [engine_name, w.card.name]
    gauges = [
        (names.running, "Sequences in the batch", st.num_running),
        (names.waiting, "Sequences waiting", st.num_waiting),
    ] + [(name, "KV cache usage (0-1)", st.kv_usage) for name in names.kv_usage]
    for name, doc, value in gauges:
        if name is not None:
            g = GaugeMetricFamily(name, doc, labels=labels)
            g.add_metric(values, value)
            yield g
    counters = [
        (names.preemptions, "Preemptions", st.num_preemptions),
        (names.prompt_tokens, "Prompt tokens", st.prompt_tokens_total),
        (names.generation_tokens, "Generated tokens", st.generated_tokens_total),
        (names.prefix_cache_hits, "Prompt tokens served from cache", st.cached_prompt_tokens_total),
    ]
    for name, doc, value in counters:
        if name is not None:
            c = CounterMetricFamily(name, doc, labels=labels)
            c.add_metric(values, value)
            yield c


class SystemServer:
    """The status endpoints of one worker, served from their own thread."""

    def __init__(self, worker: Worker, *, host: str, port: int, engine_name: str = "mock") -> None:
        """Bind on ``host:port`` when started (port 0 = any free port)."""
        self._worker = worker
        self.host = host
        self.port = port
        self.registry = CollectorRegistry()
        self.registry.register(WorkerCollector(worker, engine_name))
        engine = worker.engine
        names = (
            engine.metric_names if isinstance(engine, PublishesLoadMetrics) else EngineMetricNames()
        )
        labels = {"engine": engine_name, "model_name": worker.card.name}

        def histogram(name: str | None, doc: str, buckets: tuple[float, ...]) -> Any:
            if name is None:
                return None
            hist = Histogram(name, doc, list(labels), buckets=buckets, registry=self.registry)
            return hist.labels(**labels)

        self._ttft = histogram(
            names.time_to_first_token,
            "Time from request arrival at the worker to its first token",
            _LATENCY_BUCKETS,
        )
        self._itl = histogram(
            names.inter_token_latency,
            "Mean time between tokens of a request",
            _ITL_BUCKETS,
        )
        self._e2e = histogram(
            names.e2e_latency,
            "Time from request arrival at the worker to its end",
            _LATENCY_BUCKETS,
        )
        worker.stream_observers.append(self._observe)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._started = time.time()
        self.live_path = os.environ.get("DYN_SYSTEM_LIVE_PATH", "/live")
        self.health_path = os.environ.get("DYN_SYSTEM_HEALTH_PATH", "/health")

    def _observe(self, record: StreamRecord) -> None:
        if self._e2e is not None:
            self._e2e.observe(record.duration_s)
        ttft = record.time_to_first_token_s
        if ttft is not None:
            if self._ttft is not None:
                self._ttft.observe(ttft)
            if self._itl is not None and record.tokens > 1:
                self._itl.observe((record.duration_s - ttft) / (record.tokens - 1))

    async def start(self) -> None:
        """Start listening; :attr:`port` is the bound port afterwards."""
        httpd = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        httpd.daemon_threads = True
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="dgd-system-server"
        )
        self._thread.daemon = True
        self._thread.start()

    async def stop(self) -> None:
        """Stop listening (requests being answered finish on their own threads)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        await asyncio.to_thread(httpd.shutdown)
        httpd.server_close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    def respond(self, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for a GET of ``path`` (called on a server thread)."""
        if path == self.live_path:
            return 200, JSON, orjson.dumps({"status": "live", "uptime": self._uptime()})
        if path == self.health_path:
            return self._health()
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        return 404, JSON, orjson.dumps({"error": f"no route {path}"})

    def _uptime(self) -> dict[str, float]:
        return {"seconds": round(time.time() - self._started, 3)}

    def _health(self) -> tuple[int, str, bytes]:
        w = self._worker
        ready = w.healthy
        body = {
            "status": "ready" if ready else "notready",
            "uptime": self._uptime(),
            "endpoints": {w.instance.endpoint: "ready" if ready else "notready"},
            "instance_id": w.instance.instance_id,
        }
        return (200 if ready else 503), JSON, orjson.dumps(body)


def _handler_for(server: SystemServer) -> type[BaseHTTPRequestHandler]:
    """A request handler class answering GETs from ``server``."""

    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                status, ctype, body = server.respond(urlsplit(self.path).path)
            except Exception as exc:  # a collector failed: say so, keep serving
                log.exception("status request %s failed", self.path)
                status, ctype, body = 500, JSON, orjson.dumps({"error": repr(exc)})
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: probes every few seconds would flood the worker's log."""

    return _Handler
