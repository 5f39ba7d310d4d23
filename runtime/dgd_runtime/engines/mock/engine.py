"""A mock LLM engine: continuous batching, paged KV cache with prefix caching, simulated timing.

No model runs. A scheduler loop forms one batch per step (running sequences decode one token
each, waiting sequences are admitted and prefilled in chunks within a token budget), sleeps for
the simulated step time divided by ``speedup_ratio``, then emits one pseudo-random token per
sequence that completed its step. Default timing follows Dynamo's mocker as measured on the
reference machine: decode step ~5.75 ms at batch 1 and ~6.8 ms at batch 64, ~20 ms prefill for
~113 prompt tokens (growing with new tokens, so prefix-cache hits make prefill cheaper).

Tokens for one request are a deterministic sequence (seeded by ``sampling.seed`` or the request
id) of ids in ``[0, vocab_size)``. With ``ignore_eos`` exactly ``max_tokens`` tokens come out;
otherwise an EOS or stop token ends the request (after ``min_tokens``).

Disaggregated serving is simulated (tag ``"mock"``): a prefill-only request (``disagg`` =
``{"tag": "mock"}``) runs its prefill, emits one token and keeps its KV blocks held under a
handle returned in the final output's ``disagg``, until :meth:`MockEngine.release_transfer`
(the decode side picked them up) or ``transfer_timeout_s``. A decode request carrying those
parameters skips the prefill of the handed-over tokens and reports them as cached tokens.

Media (``PreprocessedRequest.mm``) is consumed as a digest of each item's payload (the
embeddings an encode worker produced, or the raw media) mixed into the token seed, so
different images give different outputs; the prompt's KV block chain starts at
:func:`~dgd_runtime.kv.hashing.media_root` of the media hashes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import zlib
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Final

from dgd_runtime.engines.base import (
    EngineLimits,
    EngineMetricNames,
    EngineStats,
    KvEventSink,
    ModelInfo,
)
from dgd_runtime.engines.mock.kv_cache import KvCacheManager, SequenceBlocks
from dgd_runtime.engines.mock.timing import MockTiming
from dgd_runtime.kv.hashing import ROOT_HASH, media_root
from dgd_runtime.protocol import (
    FINISH_CANCELLED,
    FINISH_ERROR,
    FINISH_LENGTH,
    FINISH_STOP,
    DisaggParams,
    EngineOutput,
    MediaRef,
    PreprocessedRequest,
)

log = logging.getLogger(__name__)

_LCG_MUL = 6364136223846793005
_LCG_INC = 1442695040888963407
_MASK64 = (1 << 64) - 1
TRANSFER_TAG: Final = "mock"
"""Tag of the mock engine's simulated KV transfer parameters."""
MEDIA_KINDS: Final = frozenset({"image", "video", "audio"})


def media_digest(mm: list[MediaRef]) -> int:
    """A 32-bit digest of the media a request consumes (payloads, else their hashes)."""
    digest = 0
    for ref in mm:
        data = ref.payload if ref.payload is not None else str(ref.media_hash).encode()
        digest = zlib.crc32(data, digest)
    return digest


@dataclass(slots=True)
class MockEngineConfig:
    """Knobs of the mock engine (names follow Dynamo's mocker flags)."""

    block_size: int = 64
    num_gpu_blocks: int = 16384
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    speedup_ratio: float = 1.0
    enable_prefix_caching: bool = True
    vocab_size: int = 32000
    context_length: int = 32768
    watermark_blocks: int = 0
    max_pending_tokens: int = 256
    """A sequence whose unread output reaches this many tokens is paused (back-pressure)."""
    max_lag_ms: float = 20.0
    """How far behind schedule the loop may run before it stops catching up."""
    transfer_timeout_s: float = 30.0
    """How long a prefill's KV blocks stay held for a decode worker that never picks them up."""
    timing: MockTiming | None = None


class _Seq:
    __slots__ = (
        "blocks",
        "cached_tokens",
        "computed",
        "disagg_out",
        "eos",
        "error",
        "finish",
        "first_sent",
        "generated",
        "handed",
        "ignore_eos",
        "max_new",
        "min_new",
        "mm_digest",
        "out",
        "prefill_only",
        "prefill_target",
        "prompt_len",
        "request_id",
        "rng",
        "root",
        "stop_ids",
        "tokens",
        "waiter",
    )

    def __init__(self, request: PreprocessedRequest, max_new: int) -> None:
        s = request.sampling
        self.request_id = request.request_id
        self.tokens: list[int] = list(request.token_ids)
        self.prompt_len = len(self.tokens)
        self.max_new = max_new
        self.min_new = s.min_tokens
        self.ignore_eos = s.ignore_eos
        self.eos = frozenset(request.eos_token_ids)
        stop = set(s.stop_token_ids)
        if not s.ignore_eos:
            stop |= self.eos
        self.stop_ids = frozenset(stop)
        seed = s.seed if s.seed is not None else zlib.crc32(request.request_id.encode())
        self.root = ROOT_HASH
        self.prefill_only = False
        self.handed = 0
        self.disagg_out: DisaggParams | None = None
        disagg = request.disagg
        mm_digest = 0
        if request.mm:
            self.root = media_root([m.media_hash for m in request.mm])
            mm_digest = media_digest(request.mm)
        if disagg is not None:
            if "handle" in disagg:
                # Decode of a handed-over prefill: the media went into the KV cache over there.
                self.handed = int(disagg.get("tokens", 0))
                mm_digest = int(disagg.get("mm_digest", mm_digest))
            else:
                self.prefill_only = True
        self.mm_digest = mm_digest
        seed ^= mm_digest
        self.rng = (seed * 0x9E3779B97F4A7C15 + 1) & _MASK64
        self.blocks: SequenceBlocks | None = None
        self.computed = 0
        self.prefill_target = self.prompt_len
        self.cached_tokens = 0
        self.generated = 0
        self.out: list[int] = []
        self.waiter: asyncio.Future[None] | None = None
        self.finish: str | None = None
        self.error: str | None = None
        self.first_sent = False


VLLM_METRIC_NAMES: Final = EngineMetricNames(
    running="vllm:num_requests_running",
    waiting="vllm:num_requests_waiting",
    kv_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    preemptions="vllm:num_preemptions",
    prompt_tokens="vllm:prompt_tokens",
    generation_tokens="vllm:generation_tokens",
    prefix_cache_hits="vllm:prefix_cache_hits",
    time_to_first_token="vllm:time_to_first_token_seconds",
    inter_token_latency="vllm:inter_token_latency_seconds",
    e2e_latency="vllm:e2e_request_latency_seconds",
)
"""The vLLM metric names Dynamo's mocker publishes too, so vLLM dashboards read the mock."""


class MockEngine:
    """The mock engine: implements :class:`~dgd_runtime.engines.base.Engine` and
    :class:`~dgd_runtime.engines.base.KvEventSource`; the class is its
    :class:`~dgd_runtime.engines.base.EngineSpec`.
    """

    metric_names: Final = VLLM_METRIC_NAMES
    transfer_tag: Final = TRANSFER_TAG
    media_kinds: Final = MEDIA_KINDS

    def __init__(self, config: MockEngineConfig | None = None) -> None:
        """Create a stopped engine; :meth:`start` runs the scheduler loop."""
        self.config = cfg = config or MockEngineConfig()
        if cfg.speedup_ratio <= 0:
            raise ValueError("speedup_ratio must be positive")
        self.timing = cfg.timing or MockTiming()
        self.kv = KvCacheManager(
            cfg.num_gpu_blocks, cfg.block_size, enable_prefix_caching=cfg.enable_prefix_caching
        )
        self._seqs: dict[str, _Seq] = {}
        self._waiting: deque[_Seq] = deque()
        self._running: list[_Seq] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sink: KvEventSink | None = None
        self._stats = EngineStats(kv_total_blocks=cfg.num_gpu_blocks)
        self._held: dict[str, tuple[SequenceBlocks, asyncio.TimerHandle]] = {}
        self.transfers_released = 0
        self.transfers_expired = 0
        self.steps = 0

    # ------------------------------------------------------------------ EngineSpec

    @classmethod
    def add_cli_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """The mock engine's options (names follow Dynamo's mocker and vLLM)."""
        mock = parser.add_argument_group("mock engine")
        mock.add_argument("--speedup-ratio", type=float, default=1.0)
        mock.add_argument("--block-size", type=int, default=64)
        mock.add_argument(
            "--num-gpu-blocks",
            "--num-gpu-blocks-override",
            dest="num_gpu_blocks",
            type=int,
            default=16384,
        )
        mock.add_argument("--max-num-seqs", type=int, default=256)
        mock.add_argument("--max-num-batched-tokens", type=int, default=8192)
        mock.add_argument(
            "--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=True
        )

    @classmethod
    def from_cli(cls, args: argparse.Namespace, model: ModelInfo) -> MockEngine:
        """A mock engine emitting ids of the model's base vocabulary."""
        return cls(
            MockEngineConfig(
                block_size=args.block_size,
                num_gpu_blocks=args.num_gpu_blocks,
                max_num_seqs=args.max_num_seqs,
                max_num_batched_tokens=args.max_num_batched_tokens,
                speedup_ratio=args.speedup_ratio,
                enable_prefix_caching=args.enable_prefix_caching,
                vocab_size=model.vocab_size,
                context_length=args.context_length or model.context_length,
            )
        )

    # ------------------------------------------------------------------ Engine protocol

    @property
    def ready(self) -> bool:
        """True while the scheduler loop runs."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the scheduler loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="mock-engine")

    async def stop(self) -> None:
        """Stop the loop; unfinished requests end "cancelled"."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for seq in list(self._seqs.values()):
            self._finish(seq, FINISH_CANCELLED)
        for handle in list(self._held):
            self.release_transfer(handle)
        self._publish_events()

    def set_kv_event_sink(self, sink: KvEventSink | None) -> None:
        """Receiver of KV events (called once per step with that step's events)."""
        self._sink = sink

    def kv_snapshot(self) -> list[int]:
        """Hashes of every cached block."""
        return self.kv.cached_hashes()

    def limits(self) -> EngineLimits:
        """The configured context length, block size, block count and batch size."""
        cfg = self.config
        return EngineLimits(
            context_length=cfg.context_length,
            kv_block_size=cfg.block_size,
            total_kv_blocks=cfg.num_gpu_blocks,
            max_num_seqs=cfg.max_num_seqs,
        )

    def stats(self) -> EngineStats:
        """Current counters."""
        st = self._stats
        st.num_running = len(self._running)
        st.num_waiting = len(self._waiting)
        st.kv_active_blocks = self.kv.active_blocks
        return st

    async def abort(self, request_id: str) -> None:
        """Stop ``request_id`` and free its blocks."""
        seq = self._seqs.get(request_id)
        if seq is not None:
            self._finish(seq, FINISH_CANCELLED)

    async def generate(self, request: PreprocessedRequest) -> AsyncGenerator[EngineOutput, None]:
        """Stream the request's tokens; closing early aborts it."""
        seq = self._submit(request)
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not seq.out and seq.finish is None:
                    waiter = seq.waiter = loop.create_future()
                    await waiter
                    seq.waiter = None
                tokens = seq.out
                if tokens:
                    seq.out = []
                    if len(tokens) >= self.config.max_pending_tokens:
                        self._wakeup.set()  # it was paused for back-pressure
                cached: int | None = None
                if not seq.first_sent:
                    seq.first_sent = True
                    cached = seq.cached_tokens
                finish = seq.finish
                yield EngineOutput(tokens, finish, seq.error, cached, seq.disagg_out)
                if finish is not None:
                    return
        finally:
            if seq.finish is None:
                self._finish(seq, FINISH_CANCELLED)

    # ------------------------------------------------------------------ disaggregation

    def accepts_transfer(self, tag: str) -> bool:
        """Only the mock engine's own simulated transfers."""
        return tag == TRANSFER_TAG

    @property
    def held_transfers(self) -> int:
        """Prefills whose KV blocks wait for a decode worker."""
        return len(self._held)

    def release_transfer(self, handle: str) -> bool:
        """The decode side picked up (or gave up on) ``handle``: free its blocks."""
        held = self._held.pop(handle, None)
        if held is None:
            return False
        blocks, timer = held
        timer.cancel()
        self.kv.free(blocks)
        self.transfers_released += 1
        self._wakeup.set()  # freed blocks may admit waiting requests
        return True

    def _hold(self, seq: _Seq) -> None:
        blocks = seq.blocks
        assert blocks is not None
        handle = seq.request_id
        timer = asyncio.get_running_loop().call_later(
            self.config.transfer_timeout_s, self._expire_transfer, handle
        )
        self._held[handle] = (blocks, timer)
        params: DisaggParams = {"tag": TRANSFER_TAG, "handle": handle, "tokens": seq.prompt_len}
        if seq.mm_digest:
            params["mm_digest"] = seq.mm_digest
        seq.disagg_out = params

    def _expire_transfer(self, handle: str) -> None:
        held = self._held.pop(handle, None)
        if held is not None:
            log.warning("KV blocks of %s not picked up in time; freed", handle)
            self.kv.free(held[0])
            self.transfers_expired += 1
            self._wakeup.set()

    # ------------------------------------------------------------------ admission

    def _submit(self, request: PreprocessedRequest) -> _Seq:
        cfg = self.config
        prompt_len = len(request.token_ids)
        room = cfg.context_length - prompt_len
        max_tokens = request.sampling.max_tokens
        max_new = room if max_tokens is None else min(max_tokens, room)
        seq = _Seq(request, max_new)
        if request.request_id in self._seqs:
            seq.finish, seq.error = FINISH_ERROR, f"duplicate request id {request.request_id!r}"
            return seq
        if prompt_len == 0:
            seq.finish, seq.error = FINISH_ERROR, "empty prompt"
            return seq
        if room <= 0:
            seq.finish, seq.error = (
                FINISH_ERROR,
                f"prompt of {prompt_len} tokens does not fit the context length {cfg.context_length}",
            )
            return seq
        needed = -(-(prompt_len + 1) // cfg.block_size)
        if needed > cfg.num_gpu_blocks:
            seq.finish, seq.error = (
                FINISH_ERROR,
                f"prompt needs {needed} KV blocks, the cache has {cfg.num_gpu_blocks}",
            )
            return seq
        if max_new <= 0:
            seq.finish = FINISH_LENGTH
            return seq
        self._seqs[seq.request_id] = seq
        self._waiting.append(seq)
        self._stats.prompt_tokens_total += prompt_len
        self._wakeup.set()
        return seq

    def _finish(self, seq: _Seq, reason: str, error: str | None = None) -> None:
        if seq.finish is not None:
            return
        seq.finish = reason
        seq.error = error
        self._seqs.pop(seq.request_id, None)
        if seq.blocks is not None:
            if seq.prefill_only and reason in (FINISH_LENGTH, FINISH_STOP):
                self._hold(seq)
            else:
                self.kv.free(seq.blocks)
            seq.blocks = None
        with contextlib.suppress(ValueError):
            self._running.remove(seq)
        with contextlib.suppress(ValueError):
            self._waiting.remove(seq)
        w = seq.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _preempt(self, seq: _Seq) -> None:
        """Recompute-style preemption: free the blocks, requeue at the front."""
        if seq.blocks is not None:
            self.kv.free(seq.blocks)
            seq.blocks = None
        self._running.remove(seq)
        seq.computed = 0
        seq.handed = 0  # the handed-over blocks are gone with the preemption: recompute
        seq.prefill_target = len(seq.tokens)
        self._waiting.appendleft(seq)
        self._stats.num_preemptions += 1

    # ------------------------------------------------------------------ scheduler

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        speedup = self.config.speedup_ratio
        max_lag = self.config.max_lag_ms / 1000.0
        deadline = loop.time()
        while True:
            decode, prefill, prefill_tokens = self._schedule()
            if not decode and not prefill:
                self._publish_events()
                self._wakeup.clear()
                await self._wakeup.wait()
                deadline = loop.time()
                continue
            sq_sum = sum(chunk * chunk for _, chunk in prefill)
            step_s = self.timing.step_ms(len(decode), prefill_tokens, sq_sum) / 1000.0 / speedup
            now = loop.time()
            if deadline < now - max_lag:
                deadline = now
            deadline += step_s
            delay = deadline - now
            # Sleeping to an absolute deadline keeps the average step time right even though
            # the event loop's timers are coarser than a sped-up step.
            await asyncio.sleep(delay if delay > 0 else 0)
            self._complete_step(decode, prefill)
            self.steps += 1
            self._publish_events()

    def _schedule(self) -> tuple[list[_Seq], list[tuple[_Seq, int]], int]:
        cfg = self.config
        kv = self.kv
        budget = cfg.max_num_batched_tokens
        pause_at = cfg.max_pending_tokens
        decode: list[_Seq] = []
        prefill: list[tuple[_Seq, int]] = []
        need_blocks = 0
        for seq in self._running:
            if seq.computed < seq.prefill_target or len(seq.out) >= pause_at:
                continue
            decode.append(seq)
            assert seq.blocks is not None
            if kv.needs_block_for_next_token(seq.blocks):
                need_blocks += 1
        while need_blocks > kv.available_blocks() and self._running:
            victim = self._running[-1]
            if victim in decode:
                decode.remove(victim)
                assert victim.blocks is not None
                if kv.needs_block_for_next_token(victim.blocks):
                    need_blocks -= 1
            self._preempt(victim)
        budget -= len(decode)
        prefill_tokens = 0
        for seq in self._running:
            if budget <= 0:
                break
            left = seq.prefill_target - seq.computed
            if left > 0:
                chunk = min(left, budget)
                prefill.append((seq, chunk))
                budget -= chunk
                prefill_tokens += chunk
        waiting = self._waiting
        while waiting and budget > 0 and len(self._running) < cfg.max_num_seqs:
            seq = waiting[0]
            hashes = kv.prompt_hashes(seq.tokens, seq.root)
            if not kv.can_allocate(len(seq.tokens), hashes, reserve=cfg.watermark_blocks + 1):
                break
            waiting.popleft()
            seq.blocks, matched = kv.allocate_prompt(seq.tokens, hashes, seq.root)
            n = len(seq.tokens)
            seq.computed = min(matched * kv.block_size, n - 1)
            seq.prefill_target = n
            if seq.handed:
                # Handed over by a prefill worker: those tokens are in the cache already.
                seq.computed = max(seq.computed, min(seq.handed, n))
            if seq.generated == 0:
                seq.cached_tokens = seq.computed
                self._stats.cached_prompt_tokens_total += seq.computed
            self._running.append(seq)
            chunk = min(n - seq.computed, budget)
            # A fully handed-over prompt has nothing left to prefill (chunk 0): its first
            # token comes out of this step at decode cost.
            prefill.append((seq, chunk))
            budget -= chunk
            prefill_tokens += chunk
        return decode, prefill, prefill_tokens

    def _complete_step(self, decode: list[_Seq], prefill: list[tuple[_Seq, int]]) -> None:
        for seq in decode:
            if seq.finish is None and seq.blocks is not None:
                self._emit_token(seq)
        for seq, chunk in prefill:
            if seq.finish is not None or seq.blocks is None:
                continue
            seq.computed += chunk
            if seq.computed >= seq.prefill_target:
                self._emit_token(seq)

    def _emit_token(self, seq: _Seq) -> None:
        blocks = seq.blocks
        assert blocks is not None
        kv = self.kv
        if kv.needs_block_for_next_token(blocks) and kv.available_blocks() == 0:
            self._preempt(seq)
            return
        x = seq.rng = (seq.rng * _LCG_MUL + _LCG_INC) & _MASK64
        vocab = self.config.vocab_size
        token = (x >> 33) % vocab
        if seq.ignore_eos and token in seq.eos:
            token = (token + 1) % vocab
        seq.tokens.append(token)
        kv.append_token(blocks, seq.tokens)
        seq.generated += 1
        self._stats.generated_tokens_total += 1
        seq.out.append(token)
        if seq.generated >= seq.min_new and token in seq.stop_ids:
            self._finish(seq, FINISH_STOP)
        elif seq.generated >= seq.max_new:
            self._finish(seq, FINISH_LENGTH)
        else:
            w = seq.waiter
            if w is not None and not w.done():
                w.set_result(None)

    def _publish_events(self) -> None:
        if not self.kv.events:
            return
        events = self.kv.take_events()
        sink = self._sink
        if sink is not None:
            try:
                sink(events)
            except Exception:
                log.exception("KV event sink failed")
