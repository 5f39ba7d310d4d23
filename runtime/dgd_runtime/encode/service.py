"""The encode worker: an engine that encodes media, served over the request plane.

A request carries only ``mm`` (media-store references to the raw media, resolved into
payloads by :class:`~dgd_runtime.transport.media_engine.MediaResolvingEngine`); its single
output carries ``disagg = {"tag": "embeddings", "urls": [...], "shapes": [[rows, hidden]]}``,
the references to the embeddings it stored. Embeddings are keyed by media hash and hidden
size, so an image seen before is not encoded again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient

from dgd_runtime.encode.encoder import DEFAULT_HIDDEN_SIZE, mock_embeddings
from dgd_runtime.engines.base import EngineLimits, EngineStats
from dgd_runtime.preprocess.multimodal import MediaInputError
from dgd_runtime.protocol import (
    FINISH_ERROR,
    FINISH_STOP,
    EngineOutput,
    ModelCard,
    PreprocessedRequest,
    WorkerInstance,
)
from dgd_runtime.router.disagg import EMBEDDINGS_TAG
from dgd_runtime.transport.discovery import DiscoveryPublisher
from dgd_runtime.transport.media_engine import MediaResolvingEngine
from dgd_runtime.transport.media_store import MediaStore, MediaStoreError
from dgd_runtime.transport.nats_conn import connect_nats
from dgd_runtime.transport.server import EndpointServer
from dgd_runtime.transport.subjects import request_subject

log = logging.getLogger(__name__)

ENCODE_COMPONENT = "encode"
MEDIA_KINDS = ("audio", "image", "video")


class EncodeEngine:
    """Implements the :class:`~dgd_runtime.engines.base.Engine` protocol for encode requests."""

    def __init__(self, store: MediaStore, *, hidden_size: int = DEFAULT_HIDDEN_SIZE) -> None:
        """Embeddings of ``hidden_size`` columns, written to ``store``."""
        self.store = store
        self.hidden_size = hidden_size
        self.encoded = 0
        self.reused = 0
        self._running = 0
        self._ready = False

    @property
    def ready(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._ready

    async def start(self) -> None:
        """Nothing to load for the mock tower."""
        self._ready = True

    async def stop(self) -> None:
        """Stop accepting."""
        self._ready = False

    async def abort(self, request_id: str) -> None:
        """Encoding is short and not interruptible: nothing to do."""

    def stats(self) -> EngineStats:
        """Requests in progress."""
        return EngineStats(num_running=self._running)

    def limits(self) -> EngineLimits:
        """No KV cache: the limits only satisfy the protocol."""
        return EngineLimits(context_length=0, kv_block_size=0, total_kv_blocks=0, max_num_seqs=0)

    async def generate(self, request: PreprocessedRequest) -> AsyncGenerator[EngineOutput, None]:
        """Encode every media item of ``request``; one final output with the references."""
        self._running += 1
        try:
            urls: list[str] = []
            shapes: list[list[int]] = []
            for i, ref in enumerate(request.mm or []):
                what = f"media item {i} ({ref.kind})"
                if ref.payload is None:
                    yield EngineOutput([], FINISH_ERROR, f"{what}: no media bytes to encode")
                    return
                key = f"emb-{ref.kind}-{(ref.media_hash or 0):016x}-{self.hidden_size}"
                try:
                    emb, shape = await asyncio.to_thread(
                        mock_embeddings,
                        ref.kind,
                        ref.payload,
                        hidden_size=self.hidden_size,
                        what=what,
                    )
                    if await self.store.contains(key):
                        self.reused += 1
                        url = "dgd-obj://" + key
                    else:
                        url = await self.store.put(key, emb, what=f"embeddings of {what}")
                        self.encoded += 1
                except (MediaInputError, MediaStoreError) as exc:
                    yield EngineOutput([], FINISH_ERROR, f"{what}: {exc}")
                    return
                urls.append(url)
                shapes.append(list(shape))
            yield EngineOutput(
                [], FINISH_STOP, disagg={"tag": EMBEDDINGS_TAG, "urls": urls, "shapes": shapes}
            )
        finally:
            self._running -= 1


@dataclass(slots=True)
class EncodeSettings:
    """Where the encode worker serves."""

    nats_url: str
    model_name: str
    model_path: str = ""
    namespace: str = "dynamo"
    endpoint: str = "generate"
    instance_id: str = ""
    hidden_size: int = DEFAULT_HIDDEN_SIZE
    heartbeat_interval: float = 1.0
    ttl: float = 3.0


class EncodeWorker:
    """Lifecycle of one encode worker: :meth:`start` (serve, register), :meth:`shutdown`."""

    def __init__(self, settings: EncodeSettings) -> None:
        """Nothing runs until :meth:`start`."""
        self.settings = settings
        iid = settings.instance_id or secrets.token_hex(8)
        card = ModelCard(
            name=settings.model_name,
            model_path=settings.model_path,
            context_length=0,
            kv_block_size=0,
            extra={"worker_type": "encode", "media_kinds": list(MEDIA_KINDS)},
        )
        self.instance = WorkerInstance(
            instance_id=iid,
            namespace=settings.namespace,
            component=ENCODE_COMPONENT,
            endpoint=settings.endpoint,
            subject=request_subject(settings.namespace, ENCODE_COMPONENT, settings.endpoint, iid),
            model=card,
            features=EndpointServer.FEATURES,
        )
        self.engine: EncodeEngine | None = None
        self.server: EndpointServer | None = None
        self.discovery: DiscoveryPublisher | None = None
        self._nc: NatsClient | None = None

    async def start(self) -> None:
        """Connect, serve the encode endpoint, register."""
        nc = await connect_nats(
            self.settings.nats_url, name=f"dgd-encode-{self.instance.instance_id}", retry_for=None
        )
        self._nc = nc
        store = MediaStore(nc)
        self.engine = EncodeEngine(store, hidden_size=self.settings.hidden_size)
        served = MediaResolvingEngine(self.engine, store)
        await served.start()
        self.server = EndpointServer(nc, self.instance.subject, served)
        await self.server.start()
        self.discovery = DiscoveryPublisher(
            nc,
            self.instance,
            interval=self.settings.heartbeat_interval,
            ttl=self.settings.ttl,
            load=lambda: {"inflight": self.server.inflight if self.server else 0},
        )
        await self.discovery.start()

    async def shutdown(self, drain_timeout: float = 10.0) -> None:
        """Deregister, drain, close."""
        if self.discovery is not None:
            await self.discovery.stop()
        if self.server is not None:
            await self.server.drain(drain_timeout)
            await self.server.close()
        if self.engine is not None:
            await self.engine.stop()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.drain(), 5)
