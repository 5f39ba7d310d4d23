"""Worker registration and discovery over plain NATS subjects, with heartbeats and expiry.

Why heartbeats on a subject rather than a JetStream KV bucket with a TTL:
- a SIGKILLed worker disappears after ``ttl`` (default 3 s) on every client, while a KV bucket's
  max-age expiry does not notify watchers on the servers we target (no delete marker), so
  clients would poll anyway;
- nothing is stored in the server: a restarted nats-server (even without JetStream or with a
  wiped store) is repopulated by the next heartbeats, and a client that was itself cut off
  does not expire anyone while disconnected (it re-queries on reconnect instead);
- a new client asks every worker to announce itself (query subject) and is current within one
  round trip, not one heartbeat.
A clean shutdown publishes a "down" message so clients drop the worker at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from dgd_runtime.protocol import (
    RuntimeProtocolError,
    WorkerInstance,
    instance_from_dict,
    instance_to_dict,
)
from dgd_runtime.transport.fastsub import confirm_sent
from dgd_runtime.transport.subjects import (
    discovery_query_subject,
    discovery_subject,
    namespace_matches,
)

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL = 1.0
DEFAULT_TTL = 3.0


class DiscoveryPublisher:
    """Announces one worker instance: at start, on every heartbeat, on queries, on reconnect."""

    def __init__(
        self,
        nc: NatsClient,
        instance: WorkerInstance,
        *,
        interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        ttl: float = DEFAULT_TTL,
        load: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        """``load`` returns extra fields (load counters) sent with every heartbeat."""
        self._nc = nc
        self.instance = instance
        self._interval = interval
        self._ttl = ttl
        self._load = load
        self._subject = discovery_subject(instance.namespace, instance.component, instance.endpoint)
        self._query_subject = discovery_query_subject(instance.component, instance.endpoint)
        self._instance_doc = instance_to_dict(instance)
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self.registered = False

    async def start(self) -> None:
        """Answer queries, announce now, then heartbeat every ``interval``."""
        self._sub = await self._nc.subscribe(self._query_subject, cb=self._on_query)
        await self.announce()
        await confirm_sent(self._nc)
        self.registered = True
        self._task = asyncio.create_task(self._heartbeat_loop(), name="dgd-heartbeat")

    async def announce(self) -> None:
        """Publish one "up" record now (also used on reconnect)."""
        doc: dict[str, Any] = {"op": "up", "ttl": self._ttl, "instance": self._instance_doc}
        if self._load is not None:
            doc["load"] = self._load()
        with contextlib.suppress(Exception):
            await self._nc.publish(self._subject, orjson.dumps(doc))

    async def stop(self) -> None:
        """Deregister: stop heartbeats and publish a "down" record."""
        self.registered = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        with contextlib.suppress(Exception):
            doc = {"op": "down", "instance_id": self.instance.instance_id}
            await self._nc.publish(self._subject, orjson.dumps(doc))
            await confirm_sent(self._nc, timeout=2)

    async def _on_query(self, msg: Msg) -> None:
        try:
            q = orjson.loads(msg.data) if msg.data else {}
            wanted = str(q.get("ns", ""))
            prefix = bool(q.get("prefix", False))
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            return
        if not wanted or namespace_matches(self.instance.namespace, wanted, prefix):
            await self.announce()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.announce()


@dataclass(slots=True)
class DiscoveredInstance:
    """A live instance as a client sees it."""

    instance: WorkerInstance
    expires_at: float
    load: dict[str, Any] = field(default_factory=dict)


InstanceCallback = Callable[[WorkerInstance], None]
RemovalCallback = Callable[[WorkerInstance, bool], None]
HeartbeatCallback = Callable[[WorkerInstance, dict[str, Any]], None]
"""Called with the instance and the load it reported, on every heartbeat of a known instance."""
"""Called with the instance and ``expired`` (True: it vanished without deregistering)."""


class DiscoveryWatcher:
    """Client-side live view of the instances of one endpoint."""

    def __init__(
        self,
        nc: NatsClient,
        namespace: str,
        component: str,
        endpoint: str,
        *,
        namespace_prefix: bool = False,
    ) -> None:
        """Watch ``namespace`` (with ``namespace_prefix``: also ``namespace-*``)."""
        self._nc = nc
        self._namespace = namespace
        self._prefix = namespace_prefix
        self._subject = discovery_subject(
            "*" if namespace_prefix else namespace, component, endpoint
        )
        self._query_subject = discovery_query_subject(component, endpoint)
        self._query = orjson.dumps({"ns": namespace, "prefix": namespace_prefix})
        self._instances: dict[str, DiscoveredInstance] = {}
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._connected = True
        self.on_added: list[InstanceCallback] = []
        self.on_removed: list[RemovalCallback] = []
        self.on_heartbeat: list[HeartbeatCallback] = []

    @property
    def instances(self) -> dict[str, DiscoveredInstance]:
        """Live instances by id (do not mutate)."""
        return self._instances

    async def start(self) -> None:
        """Subscribe to announcements and ask every worker to announce itself."""
        self._sub = await self._nc.subscribe(self._subject, cb=self._on_message)
        await self.query()
        self._task = asyncio.create_task(self._expiry_loop(), name="dgd-discovery-expiry")

    async def query(self) -> None:
        """Ask every worker of the endpoint to announce itself now."""
        with contextlib.suppress(Exception):
            await self._nc.publish(self._query_subject, self._query)
            await confirm_sent(self._nc, timeout=2)

    async def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    def on_disconnected(self) -> None:
        """Our own connection dropped: nobody can heartbeat to us, so expire nobody."""
        self._connected = False

    async def on_reconnected(self) -> None:
        """Give every known instance a fresh TTL and re-query."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for entry in self._instances.values():
            entry.expires_at = max(entry.expires_at, now + DEFAULT_TTL)
        self._connected = True
        await self.query()

    def remove(self, instance_id: str, *, expired: bool = False) -> None:
        """Drop an instance (deregistered, expired, or known unreachable)."""
        entry = self._instances.pop(instance_id, None)
        if entry is None:
            return
        self._changed.set()
        for cb in self.on_removed:
            try:
                cb(entry.instance, expired)
            except Exception:
                log.exception("discovery callback failed")

    async def wait_for(self, count: int, timeout: float) -> None:
        """Wait until at least ``count`` instances are live (``TimeoutError`` otherwise)."""
        async with asyncio.timeout(timeout):
            while len(self._instances) < count:
                self._changed.clear()
                await self._changed.wait()

    async def _on_message(self, msg: Msg) -> None:
        try:
            doc = orjson.loads(msg.data)
            op = doc["op"]
            if op == "up":
                inst = instance_from_dict(doc["instance"])
                if not namespace_matches(inst.namespace, self._namespace, self._prefix):
                    return
                ttl = float(doc.get("ttl", DEFAULT_TTL))
                load = doc.get("load") or {}
            elif op == "down":
                self.remove(str(doc["instance_id"]))
                return
            else:
                return
        except (
            orjson.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
            RuntimeProtocolError,
        ) as exc:
            log.warning("ignoring malformed discovery message: %s", exc)
            return
        now = asyncio.get_running_loop().time()
        entry = self._instances.get(inst.instance_id)
        if entry is None:
            self._instances[inst.instance_id] = DiscoveredInstance(inst, now + ttl, load)
            self._changed.set()
            for cb in self.on_added:
                try:
                    cb(inst)
                except Exception:
                    log.exception("discovery callback failed")
        else:
            entry.expires_at = now + ttl
            entry.load = load
            if entry.instance != inst:
                entry.instance = inst
            for hb in self.on_heartbeat:
                try:
                    hb(inst, load)
                except Exception:
                    log.exception("discovery callback failed")

    async def _expiry_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.25)
            if not self._connected or not self._nc.is_connected:
                continue
            now = loop.time()
            for iid, entry in list(self._instances.items()):
                if entry.expires_at < now:
                    log.info("worker instance %s expired", iid)
                    self.remove(iid, expired=True)
