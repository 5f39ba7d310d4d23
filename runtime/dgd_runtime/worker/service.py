"""A worker: one engine served over NATS, registered in discovery, publishing KV events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, runtime_checkable

import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from dgd_runtime.engines.base import (
    DisaggDecode,
    DisaggPrefill,
    Engine,
    EngineLimits,
    FixedMediaTokens,
    KvEventSource,
    MultimodalInput,
)
from dgd_runtime.protocol import KvEvent, ModelCard, WorkerInstance, kv_events_to_list
from dgd_runtime.transport.discovery import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_TTL,
    DiscoveryPublisher,
)
from dgd_runtime.transport.media_engine import MediaResolvingEngine
from dgd_runtime.transport.media_store import MediaStore
from dgd_runtime.transport.nats_conn import connect_nats
from dgd_runtime.transport.server import (
    ENGINE_DIED,
    EndpointServer,
    StreamObserver,
    StreamRecord,
)
from dgd_runtime.transport.subjects import (
    kv_dump_subject,
    kv_events_subject,
    request_subject,
    transfer_release_subject,
)

log = logging.getLogger(__name__)

WorkerRole = Literal["aggregated", "prefill", "decode"]

ENGINE_WATCH_INTERVAL = 0.1
"""Seconds between checks that a started engine is still alive (an attribute read)."""


@runtime_checkable
class ReleasesTransfers(Protocol):
    """A prefill engine whose held KV blocks a decode side frees explicitly (by handle)."""

    def release_transfer(self, handle: str) -> bool:
        """Free the blocks held for ``handle``; False when unknown (already freed)."""
        ...

    @property
    def held_transfers(self) -> int:
        """Hand-offs whose blocks are still held (published on the status server)."""
        ...


@dataclass(slots=True)
class WorkerSettings:
    """Where and how a worker serves."""

    nats_url: str
    namespace: str = "dynamo"
    component: str = "backend"
    endpoint: str = "generate"
    instance_id: str = ""
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    ttl: float = DEFAULT_TTL
    keepalive_interval: float = 0.5
    drain_timeout: float = 30.0
    publish_kv_events: bool = True
    role: WorkerRole = "aggregated"
    """Published on the card as ``worker_type``: frontends find prefill and decode workers by it."""


def card_with_role(card: ModelCard, engine: Engine, role: WorkerRole) -> ModelCard:
    """``card`` advertising the worker's role and what its engine can do beyond text."""
    extra: dict[str, Any] = {**card.extra, "worker_type": role}
    if role == "prefill":
        # An engine may hand KV over only in some configurations (vLLM: with a KV connector).
        if not isinstance(engine, DisaggPrefill) or not engine.transfer_tag:
            raise ValueError(
                "this engine cannot serve as a prefill worker as configured (no KV hand-off; "
                "vLLM needs --kv-transfer-config with a producer kv_role)"
            )
        extra["transfer_tag"] = engine.transfer_tag
    if role == "decode" and not isinstance(engine, DisaggDecode):
        raise ValueError("this engine cannot serve as a decode worker (no KV hand-off)")
    if isinstance(engine, MultimodalInput):
        extra["media_kinds"] = sorted(engine.media_kinds)
    if isinstance(engine, FixedMediaTokens) and engine.media_tokens:
        extra["media_tokens"] = dict(engine.media_tokens)
    return replace(card, extra=extra)


def card_with_limits(card: ModelCard, limits: EngineLimits) -> ModelCard:
    """``card`` with the engine's context length, KV block size, block count and batch size."""
    return replace(
        card,
        context_length=limits.context_length,
        kv_block_size=limits.kv_block_size,
        extra={
            **card.extra,
            "total_kv_blocks": limits.total_kv_blocks,
            "max_num_seqs": limits.max_num_seqs,
        },
    )


class Worker:
    """Lifecycle: :meth:`start` (engine, NATS, serve, register), :meth:`shutdown` (reverse)."""

    def __init__(self, engine: Engine, card: ModelCard, settings: WorkerSettings) -> None:
        """Wire the pieces; nothing runs until :meth:`start`."""
        self.engine = engine
        self.card = card_with_role(card, engine, settings.role)
        self.settings = settings
        iid = settings.instance_id or secrets.token_hex(8)
        subject = request_subject(settings.namespace, settings.component, settings.endpoint, iid)
        self.instance = WorkerInstance(
            instance_id=iid,
            namespace=settings.namespace,
            component=settings.component,
            endpoint=settings.endpoint,
            subject=subject,
            model=self.card,
            features=EndpointServer.FEATURES,
        )
        self.nc: NatsClient | None = None
        self.media: MediaResolvingEngine | None = None
        self.server: EndpointServer | None = None
        self.discovery: DiscoveryPublisher | None = None
        self._kv_subject = kv_events_subject(
            settings.namespace, settings.component, settings.endpoint
        )
        self._kv_seq = -1
        self._kv_dump_sub: Subscription | None = None
        self._release_sub: Subscription | None = None
        self._bg: set[asyncio.Task[Any]] = set()
        self.started_at = time.time()
        self.shutting_down = False
        self.stream_observers: list[StreamObserver] = []
        """Called with a :class:`StreamRecord` when a request ends (metrics)."""

    @property
    def healthy(self) -> bool:
        """Registered, connected and the engine is ready."""
        return (
            not self.shutting_down
            and self.engine.ready
            and self.discovery is not None
            and self.discovery.registered
            and self.nc is not None
            and self.nc.is_connected
        )

    async def start(self) -> None:
        """Start the engine, connect to NATS, serve, then register.

        The card registered is the given one with the engine's limits filled in.
        """
        await self.engine.start()
        self.card = card_with_limits(self.card, self.engine.limits())
        self.instance = replace(self.instance, model=self.card)
        self.nc = await connect_nats(
            self.settings.nats_url,
            name=f"dgd-worker-{self.instance.instance_id}",
            on_reconnected=self._on_reconnected,
            retry_for=None,
        )
        served: Engine = self.engine
        if isinstance(self.engine, MultimodalInput):
            served = self.media = MediaResolvingEngine(self.engine, MediaStore(self.nc))
        self.server = EndpointServer(
            self.nc,
            self.instance.subject,
            served,
            keepalive_interval=self.settings.keepalive_interval,
        )
        self.server.observer = self._on_stream_record
        await self.server.start()
        if self.settings.publish_kv_events and isinstance(self.engine, KvEventSource):
            self._kv_dump_sub = await self.nc.subscribe(
                kv_dump_subject(self.instance.subject), cb=self._on_kv_dump
            )
            self.engine.set_kv_event_sink(self._on_kv_events)
        if isinstance(self.engine, ReleasesTransfers):
            self._release_sub = await self.nc.subscribe(
                transfer_release_subject(self.instance.subject), cb=self._on_release
            )
        self.discovery = DiscoveryPublisher(
            self.nc,
            self.instance,
            interval=self.settings.heartbeat_interval,
            ttl=self.settings.ttl,
            load=self._load,
        )
        await self.discovery.start()
        log.info(
            "worker %s serving model %r on %s",
            self.instance.instance_id,
            self.card.name,
            self.instance.subject,
        )

    async def shutdown(self, drain_timeout: float | None = None) -> None:
        """Deregister, finish (up to ``drain_timeout``) or cancel in-flight requests, stop."""
        if self.shutting_down:
            return
        self.shutting_down = True
        timeout = self.settings.drain_timeout if drain_timeout is None else drain_timeout
        if self.discovery is not None:
            await self.discovery.stop()
        if self.server is not None:
            await self.server.drain(timeout)
            await self.server.close()
        if isinstance(self.engine, KvEventSource):
            self.engine.set_kv_event_sink(None)
        await self.engine.stop()
        for task in list(self._bg):
            task.cancel()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), 5)
            with contextlib.suppress(Exception):
                await self.nc.close()

    async def wait_engine_death(self) -> None:
        """Return once the started engine stops being ready (it died), its work handed back.

        New requests are refused from then on (the request subject is dropped, so frontends
        send them elsewhere). Every request in progress ends at once: one that has sent
        nothing yet is refused, so its frontend runs it on another worker; a stream already
        under way ends with an ``engine died`` error (its tokens cannot be moved). Engines
        that fail their own requests when they die (vLLM) have usually done so already; this
        also ends the requests of an engine that would leave them hanging.
        """
        while self.engine.ready or self.shutting_down:
            await asyncio.sleep(ENGINE_WATCH_INTERVAL)
        log.error("the engine of worker %s died", self.instance.instance_id)
        if self.server is not None:
            await self.server.stop_accepting()
            await self.server.fail_streams(f"{ENGINE_DIED}: the engine stopped serving")

    # ------------------------------------------------------------------ internals

    def _on_stream_record(self, record: StreamRecord) -> None:
        for observe in self.stream_observers:
            observe(record)

    def _load(self) -> dict[str, Any]:
        st = self.engine.stats()
        return {
            "running": st.num_running,
            "waiting": st.num_waiting,
            "kv_active_blocks": st.kv_active_blocks,
            "kv_total_blocks": st.kv_total_blocks,
            "inflight": self.server.inflight if self.server else 0,
            "kv_seq": self._kv_seq,
        }

    def _on_kv_events(self, events: list[KvEvent]) -> None:
        nc = self.nc
        if nc is None:
            return
        self._kv_seq += 1
        payload = orjson.dumps(
            {"i": self.instance.instance_id, "s": self._kv_seq, "e": kv_events_to_list(events)}
        )
        task = asyncio.get_running_loop().create_task(self._publish(self._kv_subject, payload))
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _publish(self, subject: str, payload: bytes) -> None:
        nc = self.nc
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.publish(subject, payload)

    async def _on_kv_dump(self, msg: Msg) -> None:
        if not msg.reply or self.nc is None:
            return
        engine = self.engine
        hashes = engine.kv_snapshot() if isinstance(engine, KvEventSource) else []
        doc = {"s": self._kv_seq, "h": hashes}
        with contextlib.suppress(Exception):
            await self.nc.publish(msg.reply, orjson.dumps(doc))

    async def _on_release(self, msg: Msg) -> None:
        engine = self.engine
        if isinstance(engine, ReleasesTransfers):
            engine.release_transfer(msg.data.decode(errors="replace"))

    async def _on_reconnected(self) -> None:
        if self.discovery is not None and self.discovery.registered:
            await self.discovery.announce()
