"""The contract between the worker and an inference engine, and the optional capabilities.

An engine only has to turn a :class:`PreprocessedRequest` into a stream of
:class:`EngineOutput` chunks, abort a request by id, report its load and say which limits it
runs with. Transport, discovery, back-pressure, health and the status server live in the
worker (:mod:`dgd_runtime.worker`). What only some engines can do is a separate capability
protocol the worker tests with ``isinstance``:

- :class:`KvEventSource`: reports prefix-cache changes as :class:`KvEvent` batches of chained
  block hashes computed with :mod:`dgd_runtime.kv.hashing` (an engine whose own hashes differ,
  such as vLLM's, re-hashes the token ids of each stored block), so the KV router can route on it;
- :class:`DisaggPrefill` / :class:`DisaggDecode`: the two halves of disaggregated serving;
- :class:`MultimodalInput`: consumes :attr:`PreprocessedRequest.mm` media references
  (:class:`FixedMediaTokens`: each item of a kind takes a fixed number of prompt tokens);
- :class:`PublishesLoadMetrics` / :class:`MetricsSource`: the metric names the worker's status
  server publishes the engine's load under, or the engine's own Prometheus metrics.

How the worker builds an engine from its command line is :class:`EngineSpec`, implemented by
the class an entry in :mod:`dgd_runtime.engines.registry` names.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from dgd_runtime.protocol import EngineOutput, KvEvent, PreprocessedRequest

if TYPE_CHECKING:
    from prometheus_client.core import Metric

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


@dataclass(slots=True, frozen=True)
class EngineLimits:
    """What an engine runs with, published on the model card (final once it has started)."""

    context_length: int
    """Longest prompt plus output the engine accepts, in tokens."""
    kv_block_size: int
    """Tokens per KV block (the block size of the KV events' chained hashes)."""
    total_kv_blocks: int
    max_num_seqs: int


@dataclass(slots=True, frozen=True)
class ModelInfo:
    """What the worker read from a local HF-style model directory, handed to the engine."""

    path: str
    context_length: int
    vocab_size: int
    """Ids a mock engine may emit: the tokenizer's base vocabulary (no special tokens)."""
    eos_token_ids: tuple[int, ...]


@runtime_checkable
class Engine(Protocol):
    """What the worker needs from every engine."""

    async def start(self) -> None:
        """Load / warm up; after this returns :attr:`ready` is true and :meth:`limits` final.

        Raises if the engine cannot start (the worker then exits non-zero with the reason).
        """

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

    def stats(self) -> EngineStats:
        """Current load counters."""

    def limits(self) -> EngineLimits:
        """The limits the engine runs with (read by the worker after :meth:`start`)."""


@runtime_checkable
class KvEventSource(Protocol):
    """An engine with a prefix cache whose changes the KV router can follow."""

    def set_kv_event_sink(self, sink: KvEventSink | None) -> None:
        """Install (or remove) the receiver of KV cache events."""

    def kv_snapshot(self) -> list[int]:
        """Every cached block's chained hash (for a router to resync its index)."""


@runtime_checkable
class DisaggPrefill(Protocol):
    """An engine that can run only the prefill of a request and hand its KV cache over.

    Given a request with ``disagg`` set to ``{"tag": <its transfer_tag>}`` (and
    ``max_tokens=1``), its final :class:`EngineOutput` carries ``disagg``: the engine-tagged
    transfer parameters a decode worker needs to pull the prompt's KV blocks.
    """

    @property
    def transfer_tag(self) -> str:
        """Tag of the transfer parameters it produces (e.g. ``"mock"``, ``"vllm-nixl"``)."""


@runtime_checkable
class DisaggDecode(Protocol):
    """An engine that can continue a request from KV blocks another worker prefilled."""

    def accepts_transfer(self, tag: str) -> bool:
        """Whether requests whose ``disagg`` carries transfer parameters tagged ``tag`` work."""


@runtime_checkable
class MultimodalInput(Protocol):
    """An engine that consumes :attr:`PreprocessedRequest.mm` media references."""

    @property
    def media_kinds(self) -> frozenset[str]:
        """The media it accepts (``"image"``, ``"video"``, ``"audio"``)."""


@runtime_checkable
class FixedMediaTokens(Protocol):
    """A multimodal engine whose every item of a media kind takes the same number of tokens.

    Published on the model card (``media_tokens``) so the frontend reserves exactly that many
    placeholders per item (instead of its size-based estimate): the prompt the frontend counts,
    checks against the context length and hashes for routing is then as long as the engine's.
    """

    @property
    def media_tokens(self) -> dict[str, int]:
        """Prompt tokens per item by media kind (kinds whose count varies are left out)."""


@dataclass(slots=True, frozen=True)
class EngineMetricNames:
    """Prometheus names under which the worker's status server publishes an engine's load.

    ``None`` leaves a value out. The mock engine uses the vLLM names, as Dynamo's mocker does,
    so dashboards and planners built for vLLM read it unchanged; a real engine that exposes its
    own metrics (:class:`MetricsSource`) leaves these to the engine.
    """

    running: str | None = None
    waiting: str | None = None
    kv_usage: tuple[str, ...] = ()
    preemptions: str | None = None
    prompt_tokens: str | None = None
    generation_tokens: str | None = None
    prefix_cache_hits: str | None = None
    time_to_first_token: str | None = None
    inter_token_latency: str | None = None
    e2e_latency: str | None = None


@runtime_checkable
class PublishesLoadMetrics(Protocol):
    """An engine whose :class:`EngineStats` the worker publishes under the given names."""

    @property
    def metric_names(self) -> EngineMetricNames:
        """The names to publish under."""


@runtime_checkable
class MetricsSource(Protocol):
    """An engine with metrics of its own, collected at each scrape of the worker's ``/metrics``."""

    def collect_metrics(self) -> Iterable[Metric]:
        """The engine's current metric families."""


class EngineSpec(Protocol):
    """How the worker builds an engine: implemented by the class the registry names.

    Each engine owns its command-line group; ``from_cli`` reads it back. ``args`` also carries
    the worker's generic options (``context_length``: the ``--context-length``/
    ``--max-model-len`` override, ``None`` when not given).
    """

    def add_cli_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the engine's options (in its own argument group) to the worker's parser."""

    def from_cli(self, args: argparse.Namespace, model: ModelInfo) -> Engine:
        """A stopped engine configured from the parsed command line and the model directory."""
