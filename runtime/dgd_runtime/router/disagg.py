"""The frontend's staged backend: encode → prefill → decode, each stage routed on its own.

Which stages a model has is learned from discovery, not configured: workers register under
``backend`` (aggregated or decode workers, told apart by the ``worker_type`` on their card),
``prefill`` and ``encode``, and this client watches all three.

- **Text, no prefill worker** (an aggregated graph): the request goes straight to the
  ``backend`` client, with no extra layer on the per-token path. When the backend workers
  are decode workers this is Dynamo's fallback: the decode worker prefills locally.
- **Disaggregated**: the prefill worker is chosen KV-aware and sent the prompt with
  ``max_tokens=1`` and ``disagg={"tag": <its transfer tag>}``; its final output returns the
  engine-tagged transfer parameters. The decode worker is then chosen (KV-aware) and streamed
  with ``disagg`` set. Once the decode stream produced its first output (it has the blocks),
  or when it fails, the prefill worker is told to release the blocks it held for the hand-off
  (it also frees them after a timeout, in case this process dies). A prefill that fails or
  finds no worker falls back to local prefill.
- **Media**: bytes the frontend fetched go to the media store
  (:mod:`dgd_runtime.transport.media_store`), an ``encode`` worker (when one serves the model)
  turns them into embeddings stored there too, and the prefill/aggregated worker receives
  ``dgd-obj://`` references only (request-plane messages stay small).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import replace
from typing import Any, Final

from dgd_runtime.preprocess.multimodal import MediaInputError
from dgd_runtime.protocol import (
    FINISH_ERROR,
    DisaggParams,
    EngineOutput,
    MediaRef,
    ModelCard,
    NoWorkersError,
    PreprocessedRequest,
    SamplingOptions,
    WorkerInstance,
    WorkerLostError,
)
from dgd_runtime.router.client import RoutedClient
from dgd_runtime.transport.client import TokenSink
from dgd_runtime.transport.media_store import (
    MediaStore,
    MediaStoreError,
    MediaTooLargeError,
    store_url,
)
from dgd_runtime.transport.subjects import transfer_release_subject

log = logging.getLogger(__name__)

DISAGGREGATED: Final = "disaggregated"
LOCAL_PREFILL: Final = "local_prefill"
EMBEDDINGS_TAG: Final = "embeddings"
"""Tag of an encode worker's result: ``{"tag": "embeddings", "urls": [...], "shapes": [...]}``."""

ModeRecorder = Callable[[str, str], None]
"""Told ``(model, mode)`` for each request of a model with decode workers (metrics)."""


def media_key(ref: MediaRef) -> str:
    """Object store key of a media item's raw bytes (content-derived: stored once)."""
    return f"media-{ref.kind}-{(ref.media_hash or 0):016x}"


class StagedClient:
    """Routes requests through the encode, prefill and decode stages a model has."""

    def __init__(
        self,
        backend: RoutedClient,
        prefill: RoutedClient | None = None,
        encode: RoutedClient | None = None,
        *,
        record_mode: ModeRecorder | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """Use :meth:`connect`; or wire clients directly (tests)."""
        self._rng = rng or random.Random()
        self.backend = backend
        self.prefill = prefill
        self.encode = encode
        self.record_mode = record_mode
        self.store = MediaStore(backend.nc)
        self.counts: dict[str, int] = {DISAGGREGATED: 0, LOCAL_PREFILL: 0}
        self._has_prefill: dict[str, bool] = {}
        self._has_decode: dict[str, bool] = {}
        backend.on_instances_changed(self._forget_roles)
        if prefill is not None:
            prefill.on_instances_changed(self._forget_roles)
        self._bg: set[asyncio.Task[Any]] = set()

    @classmethod
    async def connect(
        cls,
        nats_url: str,
        *,
        namespace: str,
        component: str = "backend",
        endpoint: str = "generate",
        router_mode: str | None = None,
        namespace_prefix: bool = False,
        record_mode: ModeRecorder | None = None,
        rng: random.Random | None = None,
    ) -> StagedClient:
        """Connect the three stage clients (``backend``, ``prefill``, ``encode``)."""
        clients: list[RoutedClient] = []
        try:
            for comp in (component, "prefill", "encode"):
                clients.append(
                    await RoutedClient.connect(
                        nats_url,
                        namespace=namespace,
                        component=comp,
                        endpoint=endpoint,
                        # Encode has no KV cache to route on.
                        router_mode="round-robin" if comp == "encode" else router_mode,
                        namespace_prefix=namespace_prefix,
                        rng=rng,
                    )
                )
        except BaseException:
            for client in clients:
                await client.close()
            raise
        return cls(clients[0], clients[1], clients[2], record_mode=record_mode, rng=rng)

    # ------------------------------------------------------------------ Backend protocol

    def models(self) -> list[ModelCard]:
        """Models served by live backend (aggregated or decode) workers."""
        return self.backend.models()

    def instances(self) -> list[WorkerInstance]:
        """Every live worker of every stage."""
        out = self.backend.instances()
        for client in (self.prefill, self.encode):
            if client is not None:
                out += client.instances()
        return out

    def generate(
        self, request: PreprocessedRequest, *, sink: TokenSink | None = None
    ) -> AsyncIterator[EngineOutput]:
        """Stream ``request`` through the stages its model has (see the module docstring).

        ``sink``: see :meth:`RoutedClient.generate` (it takes the decode stage's tokens).
        """
        if request.mm is None and not self._prefill_serves(request.model):
            if self._decode_serves(request.model):
                self._record(request.model, LOCAL_PREFILL)
            return self.backend.generate(request, sink=sink)  # the aggregated path, unwrapped
        return self._staged(request, sink)

    async def wait_for_workers(self, timeout: float, count: int = 1) -> None:
        """Wait for ``count`` backend workers (see :meth:`RoutedClient.wait_for_workers`)."""
        await self.backend.wait_for_workers(timeout, count)

    async def close(self) -> None:
        """Close every stage client."""
        for task in list(self._bg):
            task.cancel()
        for client in (self.encode, self.prefill, self.backend):
            if client is not None:
                await client.close()

    # ------------------------------------------------------------------ stages

    async def _staged(
        self, request: PreprocessedRequest, sink: TokenSink | None
    ) -> AsyncGenerator[EngineOutput, None]:
        if request.mm:
            request = await self._encode(request)
        params: DisaggParams | None = None
        holder: list[WorkerInstance] = []
        prefill = self.prefill
        generations = self._generations(request.model)
        if prefill is not None and generations:
            params = await self._prefill(prefill, request, holder, self._rng.choice(generations))
        if params is None:
            if self._decode_serves(request.model):
                self._record(request.model, LOCAL_PREFILL)
            agen = self.backend.generate(request, sink=sink)
            try:
                async for out in agen:
                    yield out
            finally:
                await agen.aclose()
            return
        self._record(request.model, DISAGGREGATED)
        source = holder[-1]
        released = False
        mm = request.mm
        if mm:
            # The media went into the KV cache on the prefill worker: the decode worker needs
            # their hashes (block hashes) but not the embeddings.
            mm = [MediaRef(m.kind, "", m.media_hash) for m in mm]
        # The decode worker comes from the prefill worker's generation (runtime namespace):
        # workers of different generations of a rolling update never serve each other.
        agen = self.backend.generate(
            replace(request, disagg=params, mm=mm), namespace=source.namespace, sink=sink
        )
        try:
            async for out in agen:
                if not released:
                    released = True
                    self._release(source, params)
                yield out
        finally:
            await agen.aclose()
            if not released:
                self._release(source, params)

    def _generations(self, model: str) -> list[str]:
        """Runtime namespaces where both a prefill and a backend worker serve ``model``.

        One namespace normally; during a managed rolling update each worker generation has
        its own (``<prefix>-<hash>``), and a request is served within one of them.
        """
        prefill = self.prefill
        if prefill is None or not self._prefill_serves(model):
            return []
        return sorted(prefill.namespaces(model) & self.backend.namespaces(model))

    async def _prefill(
        self,
        prefill: RoutedClient,
        request: PreprocessedRequest,
        holder: list[WorkerInstance],
        namespace: str,
    ) -> DisaggParams | None:
        """Run the prefill stage; the transfer parameters, or None to prefill locally."""
        tag = self._transfer_tag(prefill, request.model, namespace)
        s = request.sampling
        preq = replace(
            request,
            sampling=SamplingOptions(
                max_tokens=1,
                temperature=s.temperature,
                top_p=s.top_p,
                top_k=s.top_k,
                seed=s.seed,
                ignore_eos=True,
            ),
            disagg={"tag": tag},
        )
        params: DisaggParams | None = None
        agen = prefill.generate(preq, on_route=holder.append, namespace=namespace)
        try:
            async for out in agen:
                if out.finish_reason is None:
                    continue
                if out.finish_reason == FINISH_ERROR:
                    log.warning(
                        "prefill of %s failed (%s); prefilling locally",
                        request.request_id,
                        out.error,
                    )
                elif out.disagg is None:
                    log.warning(
                        "prefill worker returned no transfer parameters; prefilling locally"
                    )
                else:
                    params = out.disagg
                break
        except (NoWorkersError, WorkerLostError) as exc:
            log.info("no prefill for %s (%s); prefilling locally", request.request_id, exc)
        finally:
            await agen.aclose()
        return params

    async def _encode(self, request: PreprocessedRequest) -> PreprocessedRequest:
        """Put fetched media in the store and, with an encode worker, turn it into embeddings."""
        assert request.mm is not None
        store = self.store
        refs: list[MediaRef] = []
        for i, ref in enumerate(request.mm):
            if ref.payload is None:
                refs.append(ref)
                continue
            # Until stored, a loaded item's url is the request path of its content part.
            what = ref.url or f"media item {i} ({ref.kind})"
            key = media_key(ref)
            try:
                if not await store.contains(key):
                    await store.put(key, ref.payload, what=what)
            except MediaTooLargeError as exc:
                raise MediaInputError(str(exc), ref.url or None) from exc
            except MediaStoreError as exc:
                raise MediaInputError(f"media store: {exc}") from exc
            refs.append(MediaRef(ref.kind, store_url(key), ref.media_hash))
        encode = self.encode
        if encode is None or not encode.serves(request.model):
            return replace(request, mm=refs)
        ereq = PreprocessedRequest(
            request_id=request.request_id + "-encode",
            model=request.model,
            token_ids=[],
            sampling=SamplingOptions(max_tokens=1),
            mm=refs,
        )
        result: DisaggParams | None = None
        agen = encode.generate(ereq)
        try:
            async for out in agen:
                if out.finish_reason is None:
                    continue
                if out.finish_reason == FINISH_ERROR:
                    raise MediaInputError(f"encode worker: {out.error}")
                result = out.disagg
                break
        finally:
            await agen.aclose()
        urls = result.get("urls") if result else None
        if (
            result is None
            or result.get("tag") != EMBEDDINGS_TAG
            or not isinstance(urls, list)
            or len(urls) != len(refs)
        ):
            raise MediaInputError("encode worker returned no embeddings")
        return replace(
            request,
            mm=[MediaRef(r.kind, str(u), r.media_hash) for r, u in zip(refs, urls, strict=True)],
        )

    # ------------------------------------------------------------------ internals

    def _release(self, source: WorkerInstance, params: DisaggParams) -> None:
        handle = params.get("handle")
        if not isinstance(handle, str):
            return
        subject = transfer_release_subject(source.subject)
        task = asyncio.get_running_loop().create_task(self._publish(subject, handle.encode()))
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _publish(self, subject: str, payload: bytes) -> None:
        with contextlib.suppress(Exception):
            await self.backend.nc.publish(subject, payload)

    def _record(self, model: str, mode: str) -> None:
        self.counts[mode] += 1
        if self.record_mode is not None:
            self.record_mode(model, mode)

    def _forget_roles(self) -> None:
        self._has_prefill.clear()
        self._has_decode.clear()

    def _prefill_serves(self, model: str) -> bool:
        known = self._has_prefill.get(model)
        if known is None:
            prefill = self.prefill
            known = self._has_prefill[model] = prefill is not None and prefill.serves(model)
        return known

    def _decode_serves(self, model: str) -> bool:
        known = self._has_decode.get(model)
        if known is None:
            known = self._has_decode[model] = any(
                i.model.name == model and i.model.extra.get("worker_type") == "decode"
                for i in self.backend.instances()
            )
        return known

    @staticmethod
    def _transfer_tag(prefill: RoutedClient, model: str, namespace: str) -> str:
        for inst in prefill.instances():
            if inst.model.name == model and inst.namespace == namespace:
                return str(inst.model.extra.get("transfer_tag", ""))
        return ""
