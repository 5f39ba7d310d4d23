"""The mock engine: continuous batching over a paged, prefix-cached KV cache, simulated timing."""

from dgd_runtime.engines.mock.engine import VLLM_METRIC_NAMES, MockEngine, MockEngineConfig
from dgd_runtime.engines.mock.timing import MockTiming

__all__ = ["VLLM_METRIC_NAMES", "MockEngine", "MockEngineConfig", "MockTiming"]
