"""The worker's /metrics publishes the engine's load under names the engine chose, none else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

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
