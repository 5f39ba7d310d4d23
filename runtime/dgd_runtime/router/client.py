"""The frontend's handle on the workers: discovery + routing + streaming over NATS.

    client = await RoutedClient.connect(nats_url, namespace="dynamo", router_mode="kv")
    await client.wait_for_workers(timeout=30)
    async for out in client.generate(request):   # EngineOutput chunks
        ...
    await client.close()

``generate`` raises :class:`NoWorkersError` before the first item when no live worker serves the
model (after trying every candidate that turned out to be unreachable),
:class:`WorkerLostError` when the serving worker dies mid-stream, and
:class:`~dgd_runtime.protocol.RuntimeProtocolError` (a ``ValueError``) when the request is too
large for the NATS server's ``max_payload``. Closing the iterator early
(``aclose()``, or abandoning an ``async for``) cancels the request on the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, Callable
from typing import Any

import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from dgd_runtime.protocol import (
    EngineOutput,
    KvEvent,
    ModelCard,
    NoWorkersError,
    PreprocessedRequest,
    RuntimeProtocolError,
    WorkerInstance,
    WorkerLostError,
    kv_events_from_list,
)
from dgd_runtime.router.policies import RouteDecision, RoutingPolicy, make_policy
from dgd_runtime.transport.client import (
    DEFAULT_WINDOW,
    ResponseStream,
    StreamClient,
    TokenSink,
    WorkerRefusedError,
    WorkerUnreachableError,
)
from dgd_runtime.transport.discovery import DiscoveryWatcher
from dgd_runtime.transport.nats_conn import connect_nats
from dgd_runtime.transport.subjects import kv_dump_subject, kv_events_subject

log = logging.getLogger(__name__)


class _KvSync:
    """Per-worker KV event sequencing: detects gaps and resynchronises from a snapshot."""

    __slots__ = ("buffered", "last_seq", "reported_seq", "syncing")

    def __init__(self) -> None:
        self.last_seq = -1
        self.reported_seq = -1  # event sequence the previous heartbeat claimed
        self.syncing = False
        self.buffered: list[tuple[int, list[KvEvent]]] = []


class RoutedClient:
    """Routes :class:`PreprocessedRequest` s to live workers of one endpoint and streams outputs."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        namespace: str,
        component: str,
        endpoint: str,
        policy: RoutingPolicy,
        window: int = DEFAULT_WINDOW,
        namespace_prefix: bool = False,
    ) -> None:
        """Internal: use :meth:`connect`."""
        self._nc = nc
        self.namespace = namespace
        self.component = component
        self.endpoint = endpoint
        self.policy = policy
        self.router_mode = policy.name
        self.namespace_prefix = namespace_prefix
        self._watcher = DiscoveryWatcher(
            nc, namespace, component, endpoint, namespace_prefix=namespace_prefix
        )
        self._streams = StreamClient(nc, window=window)
        self._kv_sub: Subscription | None = None
        self._kv_sync: dict[str, _KvSync] = {}
        self._bg: set[asyncio.Task[Any]] = set()
        self._closed = False

    @classmethod
    async def connect(
        cls,
        nats_url: str,
        *,
        namespace: str,
        component: str = "backend",
        endpoint: str = "generate",
        router_mode: str | None = None,
        window: int = DEFAULT_WINDOW,
        rng: random.Random | None = None,
        namespace_prefix: bool = False,
        connect_timeout: float = 30.0,
    ) -> RoutedClient:
        """Connect to NATS and start watching the endpoint's workers.

        ``router_mode``: ``round-robin`` | ``random`` | ``kv``; None means ``$DYN_ROUTER_MODE``,
        else round-robin. ``window``: max unread messages per stream (back-pressure).
        ``namespace_prefix``: also route to workers in ``<namespace>-<suffix>`` namespaces (what
        Dynamo's frontends do with ``DYN_NAMESPACE_PREFIX`` during rolling updates).
        ``connect_timeout``: keep retrying the first connection this long (NATS starting up).
        """
        policy = make_policy(router_mode, rng=rng)
        holder: list[RoutedClient] = []

        async def on_disconnected() -> None:
            if holder:
                holder[0]._watcher.on_disconnected()

        async def on_reconnected() -> None:
            if holder:
                await holder[0]._on_reconnected()

        nc = await connect_nats(
            nats_url,
            name=f"dgd-router-{namespace}",
            on_disconnected=on_disconnected,
            on_reconnected=on_reconnected,
            retry_for=connect_timeout,
        )
        self = cls(
            nc,
            namespace=namespace,
            component=component,
            endpoint=endpoint,
            policy=policy,
            window=window,
            namespace_prefix=namespace_prefix,
        )
        holder.append(self)
        try:
            await self._start()
        except BaseException:
            await nc.close()
            raise
        return self

    async def _start(self) -> None:
        self._watcher.on_added.append(self._on_instance_added)
        self._watcher.on_removed.append(self._on_instance_removed)
        self._watcher.on_heartbeat.append(self._on_heartbeat)
        await self._streams.start()
        if self.policy.name == "kv":
            ns = "*" if self.namespace_prefix else self.namespace
            subject = kv_events_subject(ns, self.component, self.endpoint)
            self._kv_sub = await self._nc.subscribe(subject, cb=self._on_kv_events)
        await self._watcher.start()

    # ------------------------------------------------------------------ public API

    def instances(self) -> list[WorkerInstance]:
        """Live worker instances."""
        return [e.instance for e in self._watcher.instances.values()]

    @property
    def nc(self) -> NatsClient:
        """The NATS connection (for side channels: media store, transfer release)."""
        return self._nc

    def serves(self, model: str) -> bool:
        """Whether a live worker serves ``model``."""
        return any(e.instance.model.name == model for e in self._watcher.instances.values())

    def on_instances_changed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a worker is discovered or goes away."""
        self._watcher.on_added.append(lambda _inst: callback())
        self._watcher.on_removed.append(lambda _inst, _expired: callback())

    def models(self) -> list[ModelCard]:
        """Model cards served by live workers (one per model name)."""
        cards: dict[str, ModelCard] = {}
        for entry in self._watcher.instances.values():
            cards.setdefault(entry.instance.model.name, entry.instance.model)
        return list(cards.values())

    async def wait_for_workers(self, timeout: float, count: int = 1) -> None:
        """Wait until ``count`` workers are live; :class:`NoWorkersError` after ``timeout`` s."""
        try:
            await self._watcher.wait_for(count, timeout)
        except TimeoutError:
            raise NoWorkersError(
                f"fewer than {count} worker(s) for {self.namespace}.{self.component}."
                f"{self.endpoint} after {timeout}s"
            ) from None

    async def generate(
        self,
        request: PreprocessedRequest,
        on_route: Callable[[WorkerInstance], None] | None = None,
        *,
        namespace: str | None = None,
        sink: TokenSink | None = None,
    ) -> AsyncGenerator[EngineOutput, None]:
        """Route ``request`` and stream its outputs (see the module docstring for errors).

        ``on_route`` is told the instance that started serving the request (disaggregation
        needs to know which prefill worker holds a hand-off). ``namespace`` restricts the
        candidates to one runtime namespace (one worker generation of a rolling update).
        ``sink`` takes the plain tokens after the first output as they arrive, instead of
        this generator (:meth:`ResponseStream.set_sink`); the others still come from here.
        """
        tried: set[str] = set()
        policy = self.policy
        while True:
            candidates = self._candidates(request.model, tried, namespace)
            decision = policy.select(request, candidates)
            iid = decision.instance.instance_id
            stream: ResponseStream | None = None
            try:
                stream = await self._streams.open(decision.instance, request)
                first = await stream.next()
            except WorkerUnreachableError as exc:
                log.info("worker %s unreachable (%s); trying another", iid, exc)
                policy.not_served(decision)
                tried.add(iid)
                self._watcher.remove(iid)
                continue
            except WorkerLostError as exc:
                # Lost before yielding anything: safe to run the request elsewhere (and tell
                # the worker to stop, in case it is merely unresponsive rather than dead).
                log.info("worker %s lost before the first output (%s); trying another", iid, exc)
                policy.not_served(decision)
                tried.add(iid)
                if stream is not None:
                    self._spawn(_cancel_quietly(stream, force=True))
                continue
            except WorkerRefusedError as exc:
                log.info("worker %s refused the request (%s); trying another", iid, exc)
                policy.not_served(decision)
                tried.add(iid)
                continue
            except BaseException:
                policy.finished(decision)
                if stream is not None:
                    await _cancel_quietly(stream)
                raise
            break
        if on_route is not None:
            on_route(decision.instance)
        return_early = True
        try:
            policy.prefill_done(decision)
            yield first
            if first.finish_reason is None:
                stream.set_sink(sink)
                next_output = stream.next
                while True:
                    out = await next_output()
                    yield out
                    if out.finish_reason is not None:
                        break
            return_early = False
        finally:
            stream.set_sink(None)
            self._finished(decision, stream, return_early)

    async def close(self) -> None:
        """Stop watching, fail open streams, close the NATS connection."""
        if self._closed:
            return
        self._closed = True
        await self._watcher.stop()
        await self._streams.close()
        for task in list(self._bg):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._nc.drain(), 5)
        with contextlib.suppress(Exception):
            await self._nc.close()

    async def __aenter__(self) -> RoutedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ internals

    def namespaces(self, model: str) -> set[str]:
        """Runtime namespaces with a live worker serving ``model`` (generations, during a
        rolling update of a ``namespace_prefix`` client)."""
        return {
            e.instance.namespace
            for e in self._watcher.instances.values()
            if e.instance.model.name == model
        }

    def _candidates(
        self, model: str, tried: set[str], namespace: str | None = None
    ) -> list[WorkerInstance]:
        if self._closed:
            raise NoWorkersError("the routed client is closed")
        live = [e.instance for e in self._watcher.instances.values()]
        if namespace is not None:
            live = [i for i in live if i.namespace == namespace]
        if not live:
            raise NoWorkersError(
                f"no live workers for {self.namespace}.{self.component}.{self.endpoint}"
            )
        serving = [i for i in live if i.model.name == model] if model else live
        if not serving:
            raise NoWorkersError(f"no live worker serves model {model!r}")
        candidates = [i for i in serving if i.instance_id not in tried]
        if not candidates:
            raise NoWorkersError(
                f"no reachable worker for model {model!r} (tried {len(tried)} unreachable)"
            )
        return candidates

    def _finished(self, decision: RouteDecision, stream: ResponseStream, early: bool) -> None:
        self.policy.finished(decision)
        if early:
            # The consumer stopped early, or the stream failed on our side while the worker
            # may still run it: either way the worker should stop.
            self._spawn(_cancel_quietly(stream, force=True))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def _on_instance_added(self, inst: WorkerInstance) -> None:
        if self.policy.name == "kv":
            self._spawn(self._resync(inst))

    def _on_instance_removed(self, inst: WorkerInstance, expired: bool) -> None:
        self.policy.worker_removed(inst.instance_id)
        self._kv_sync.pop(inst.instance_id, None)
        if expired:
            self._streams.fail_instance(inst.instance_id, "registration expired")

    def _on_heartbeat(self, inst: WorkerInstance, load: dict[str, Any]) -> None:
        # A worker's last KV events may have been lost (e.g. while NATS restarted) with no
        # later event to reveal the gap: its heartbeat carries its event sequence number.
        if self.policy.name != "kv":
            return
        # Events published just before a heartbeat may still be on their way, so only a gap
        # that persists for a whole heartbeat interval triggers a resync.
        sync = self._kv_sync.get(inst.instance_id)
        reported = load.get("kv_seq")
        if sync is None or not isinstance(reported, int):
            return
        if not sync.syncing and sync.reported_seq > sync.last_seq:
            sync.syncing = True
            self._spawn(self._resync(inst))
        sync.reported_seq = reported

    async def _on_reconnected(self) -> None:
        await self._watcher.on_reconnected()
        if self.policy.name == "kv":
            for inst in self.instances():
                self._spawn(self._resync(inst))

    async def _on_kv_events(self, msg: Msg) -> None:
        try:
            doc = orjson.loads(msg.data)
            iid = str(doc["i"])
            seq = int(doc["s"])
            events = kv_events_from_list(doc["e"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, RuntimeProtocolError):
            log.warning("ignoring malformed KV event message")
            return
        entry = self._watcher.instances.get(iid)
        if entry is None:
            return  # unknown worker: its snapshot is taken when it is discovered
        sync = self._kv_sync.get(iid)
        if sync is None:
            sync = self._kv_sync[iid] = _KvSync()
            sync.syncing = True
            self._spawn(self._resync(entry.instance))
        if sync.syncing:
            sync.buffered.append((seq, events))
            return
        if seq != sync.last_seq + 1:
            log.info("KV events of %s: gap (%d after %d); resyncing", iid, seq, sync.last_seq)
            sync.syncing = True
            sync.buffered.append((seq, events))
            self._spawn(self._resync(entry.instance))
            return
        sync.last_seq = seq
        self.policy.kv_events(iid, events)

    async def _resync(self, inst: WorkerInstance) -> None:
        """Replace our view of a worker's cache with its snapshot, then replay newer events."""
        iid = inst.instance_id
        sync = self._kv_sync.get(iid)
        if sync is None:
            sync = self._kv_sync[iid] = _KvSync()
        sync.syncing = True
        try:
            reply = await self._nc.request(kv_dump_subject(inst.subject), b"", timeout=2.0)
            doc = orjson.loads(reply.data)
            snap_seq = int(doc["s"])
            hashes = [int(h) for h in doc["h"]]
        except Exception as exc:
            log.info("KV snapshot of %s failed: %s", iid, exc)
            if self._kv_sync.get(iid) is sync:
                sync.syncing = False
                sync.buffered.clear()
                sync.last_seq = -1  # next event triggers another attempt via the gap check
            return
        if self._kv_sync.get(iid) is not sync or iid not in self._watcher.instances:
            return
        self.policy.kv_reset(iid, hashes)
        sync.last_seq = snap_seq
        for seq, events in sorted(sync.buffered, key=lambda x: x[0]):
            if seq == sync.last_seq + 1:
                self.policy.kv_events(iid, events)
                sync.last_seq = seq
        sync.buffered.clear()
        sync.syncing = False


async def _cancel_quietly(stream: ResponseStream, *, force: bool = False) -> None:
    with contextlib.suppress(Exception):
        await stream.cancel(force=force)
