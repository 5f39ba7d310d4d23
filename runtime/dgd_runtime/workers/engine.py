"""The contract between the worker wrapper and an inference engine.

An engine (the mock engine here; vLLM, SGLang and TensorRT-LLM adapters later) only has to
turn a :class:`PreprocessedRequest` into a stream of :class:`EngineOutput` chunks, abort a
request by id, and report prefix-cache changes as :class:`KvEvent` batches. Transport,
discovery, back-pressure, health and metrics live in the worker wrapper.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from dgd_runtime.protocol import EngineOutput, KvEvent, PreprocessedRequest

KvEventSink = Callable[[list[KvEvent]], None]
"""Called by the engine (on its event loop, synchronously) with each batch of KV events."""


@dataclass(slots=True)
class EngineStats:
    """A point-in-time view of an engine's load, for routing, health and metrics."""

    num_running: int = 0
    num_waiting: int = 0
    kv_active_blocks: int = 0
    kv_total_blocks: int = 0
    num_preemptions: int = 0
    prompt_tokens_total: int = 0
    cached_prompt_tokens_total: int = 0
    generated_tokens_total: int = 0

    @property
    def kv_usage(self) -> float:
        """Fraction of KV blocks held by active sequences (0..1)."""
        return self.kv_active_blocks / self.kv_total_blocks if self.kv_total_blocks else 0.0


@runtime_checkable
class Engine(Protocol):
    """What the worker wrapper needs from an engine."""

    async def start(self) -> None:
        """Load / warm up; after this returns :attr:`ready` is true."""

    async def stop(self) -> None:
        """Stop scheduling; pending requests end with finish_reason "cancelled"."""

    @property
    def ready(self) -> bool:
        """True once the engine accepts requests."""

    def generate(self, request: PreprocessedRequest) -> AsyncIterator[EngineOutput]:
        """Stream outputs; the last chunk has ``finish_reason`` set.

        Closing the iterator early (``aclose``) must abort the request and free its resources.
        """

    async def abort(self, request_id: str) -> None:
        """Stop generating for ``request_id`` and free its KV blocks (no-op if unknown)."""

    def set_kv_event_sink(self, sink: KvEventSink | None) -> None:
        """Install (or remove) the receiver of KV cache events."""

    def kv_snapshot(self) -> list[int]:
        """Every cached block's chained hash (for a router to resync its index)."""

    def stats(self) -> EngineStats:
        """Current load counters."""
