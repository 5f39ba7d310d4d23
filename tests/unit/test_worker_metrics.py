"""The worker's /metrics publishes the engine's load under names the engine chose, none else."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterable

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from dgd_runtime.engines.base import EngineLimits, EngineStats
from dgd_runtime.engines.mock import MockEngine, MockEngineConfig
from dgd_runtime.protocol import EngineOutput, ModelCard, PreprocessedRequest
from dgd_runtime.worker.service import Worker, WorkerSettings
from dgd_runtime.worker.system_server import SystemServer

pytestmark = pytest.mark.unit

CARD = ModelCard("m", "/m", 1024, 16)


class OwnMetricsEngine:
    """An engine with Prometheus metrics of its own and no published load names."""

    ready = True

    async def start(self) -> None:
        """Nothing to start."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def generate(self, request: PreprocessedRequest) -> AsyncIterator[EngineOutput]:
        """One empty final chunk."""
        yield EngineOutput([], "stop")

    async def abort(self, request_id: str) -> None:
        """Nothing to abort."""

    def stats(self) -> EngineStats:
        """A busy engine."""
        return EngineStats(num_running=3, kv_active_blocks=1, kv_total_blocks=2)

    def limits(self) -> EngineLimits:
        """Fixed limits."""
        return EngineLimits(1024, 16, 2, 8)

    def collect_metrics(self) -> Iterable[Metric]:
        """The engine's own gauge."""
        gauge = GaugeMetricFamily("engine_own_running", "running per the engine itself")
        gauge.add_metric([], 3)
        yield gauge


def scrape(engine: object, engine_name: str) -> str:
    worker = Worker(engine, CARD, WorkerSettings(nats_url="nats://127.0.0.1:1"))  # type: ignore[arg-type]
    server = SystemServer(worker, host="127.0.0.1", port=0, engine_name=engine_name)
    return generate_latest(server.registry).decode()


def test_engine_with_its_own_metrics_gets_no_vllm_names() -> None:
    text = scrape(OwnMetricsEngine(), "own")
    assert "engine_own_running 3.0" in text
    assert "vllm:" not in text
    assert "dynamo_component_requests_total" in text


def test_mock_engine_publishes_the_vllm_names_dynamos_mocker_uses() -> None:
    text = scrape(MockEngine(MockEngineConfig(num_gpu_blocks=8)), "mock")
    for name in (
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_hits_total",
        "vllm:time_to_first_token_seconds_bucket",
    ):
        assert name in text, name


async def test_status_endpoints_answer_while_the_worker_loop_is_blocked() -> None:
    worker = Worker(MockEngine(MockEngineConfig()), CARD, WorkerSettings(nats_url="nats://x:1"))
    server = SystemServer(worker, host="127.0.0.1", port=0, engine_name="mock")
    await server.start()
    try:
        # Each GET is made synchronously on the worker's event loop thread, so the loop runs
        # nothing until it returns: only a server that does not need that loop can answer
        # (one on the loop would leave the GET waiting for its timeout).
        base = f"http://127.0.0.1:{server.port}"
        metrics = httpx.get(f"{base}/metrics", timeout=30)
        health = httpx.get(f"{base}/health", timeout=30)
        live = httpx.get(f"{base}/live?probe=1", timeout=30)
        missing = httpx.get(f"{base}/nothing", timeout=30)
    finally:
        await server.stop()
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "dynamo_component_requests_total{" in metrics.text
    assert health.status_code == 503 and health.json()["status"] == "notready"
    assert live.status_code == 200 and live.json()["status"] == "live"
    assert missing.status_code == 404
    assert not [t for t in threading.enumerate() if t.name == "dgd-system-server"]
