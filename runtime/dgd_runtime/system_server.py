"""A worker's system status server: ``/live``, ``/health``, ``/metrics`` (Dynamo's paths).

``/live`` answers 200 while the process runs; ``/health`` answers 200 ``{"status": "ready"}``
once the worker is registered and its engine ready, else 503 ``notready`` (so a pod is
taken out of rotation while it starts or drains). Metrics are collected at scrape time from
the worker's counters, so serving requests costs nothing extra.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dgd_runtime.transport.server import StreamRecord

if TYPE_CHECKING:
    from dgd_runtime.workers.service import Worker

CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"
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
    """Prometheus view of one worker (Dynamo component names plus vLLM-compatible ones)."""

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
        st = w.engine.stats()
        vl = ["engine", "model_name"]
        vv = [self._engine_name, w.card.name]
        yield gauge("vllm:num_requests_running", "Sequences in the batch", st.num_running, vl, vv)
        yield gauge("vllm:num_requests_waiting", "Sequences waiting", st.num_waiting, vl, vv)
        yield gauge("vllm:kv_cache_usage_perc", "KV cache usage (0-1)", st.kv_usage, vl, vv)
        yield gauge("vllm:gpu_cache_usage_perc", "KV cache usage (0-1)", st.kv_usage, vl, vv)
        m = CounterMetricFamily("vllm:num_preemptions", "Preemptions", labels=vl)
        m.add_metric(vv, st.num_preemptions)
        yield m
        m = CounterMetricFamily("vllm:prompt_tokens", "Prompt tokens", labels=vl)
        m.add_metric(vv, st.prompt_tokens_total)
        yield m
        m = CounterMetricFamily("vllm:generation_tokens", "Generated tokens", labels=vl)
        m.add_metric(vv, st.generated_tokens_total)
        yield m
        m = CounterMetricFamily(
            "vllm:prefix_cache_hits", "Prompt tokens served from cache", labels=vl
        )
        m.add_metric(vv, st.cached_prompt_tokens_total)
        yield m


class SystemServer:
    """aiohttp app serving the status endpoints of one worker."""

    def __init__(self, worker: Worker, *, host: str, port: int, engine_name: str = "mock") -> None:
        """Bind on ``host:port`` when started (port 0 = any free port)."""
        self._worker = worker
        self.host = host
        self.port = port
        self.registry = CollectorRegistry()
        self.registry.register(WorkerCollector(worker, engine_name))
        labels = {"engine": engine_name, "model_name": worker.card.name}
        names = list(labels)
        self._ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time from request arrival at the worker to its first token",
            names,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        ).labels(**labels)
        self._itl = Histogram(
            "vllm:inter_token_latency_seconds",
            "Mean time between tokens of a request",
            names,
            buckets=_ITL_BUCKETS,
            registry=self.registry,
        ).labels(**labels)
        self._e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Time from request arrival at the worker to its end",
            names,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        ).labels(**labels)
        worker.stream_observers.append(self._observe)
        self._runner: web.AppRunner | None = None
        self._started = time.time()
        self.live_path = os.environ.get("DYN_SYSTEM_LIVE_PATH", "/live")
        self.health_path = os.environ.get("DYN_SYSTEM_HEALTH_PATH", "/health")

    def _observe(self, record: StreamRecord) -> None:
        self._e2e.observe(record.duration_s)
        ttft = record.time_to_first_token_s
        if ttft is not None:
            self._ttft.observe(ttft)
            if record.tokens > 1:
                self._itl.observe((record.duration_s - ttft) / (record.tokens - 1))

    async def start(self) -> None:
        """Start listening; :attr:`port` is the bound port afterwards."""
        app = web.Application()
        app.router.add_get(self.live_path, self._live)
        app.router.add_get(self.health_path, self._health)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _uptime(self) -> dict[str, float]:
        return {"seconds": round(time.time() - self._started, 3)}

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "live", "uptime": self._uptime()})

    async def _health(self, request: web.Request) -> web.Response:
        w = self._worker
        ready = w.healthy
        body = {
            "status": "ready" if ready else "notready",
            "uptime": self._uptime(),
            "endpoints": {w.instance.endpoint: "ready" if ready else "notready"},
            "instance_id": w.instance.instance_id,
        }
        return web.json_response(body, status=200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
