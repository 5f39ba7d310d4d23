"""Hot-path shortcuts around nats-py: inline subscriptions, batched publishes, immediate flushes.

Subscriptions whose messages are handled inline by nats-py's reader, without a queue hop:

nats-py hands each message to a per-subscription ``asyncio.Queue`` drained by a task that
awaits the callback: two extra scheduling steps per message. For the token stream that is a
large share of the client's per-message cost, so hot subscriptions here use a queue whose
``put_nowait`` calls a plain (synchronous, non-blocking) handler directly. Handlers must not
block; anything that needs to await spawns a task. If nats-py's internals ever change shape,
:func:`subscribe_direct` falls back to an ordinary callback subscription.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)

MsgHandler = Callable[[Msg], None]


class _InlineQueue(asyncio.Queue[Msg]):
    """Looks like an always-empty queue to nats-py; delivers each message to ``handler``."""

    def __init__(self, sub: Subscription, handler: MsgHandler) -> None:
        super().__init__()
        self._sub = sub
        self._handler = handler

    def put_nowait(self, item: Msg) -> None:
        # nats-py counted the bytes as pending before queueing; they are consumed at once.
        self._sub._pending_size -= len(item.data)
        try:
            self._handler(item)
        except Exception:
            log.exception("message handler for %s failed", item.subject)


async def subscribe_direct(nc: NatsClient, subject: str, handler: MsgHandler) -> Subscription:
    """Subscribe ``handler`` to ``subject``; it runs inline in the connection's reader."""
    sub = await nc.subscribe(subject)
    if isinstance(getattr(sub, "_pending_queue", None), asyncio.Queue) and hasattr(
        sub, "_pending_size"
    ):
        old = sub._pending_queue
        sub._pending_queue = _InlineQueue(sub, handler)
        while not old.empty():  # anything that arrived before the swap
            sub._pending_queue.put_nowait(old.get_nowait())
        return sub
    await sub.unsubscribe()  # pragma: no cover - only if nats-py's internals change

    async def callback(msg: Msg) -> None:  # pragma: no cover
        handler(msg)

    return await nc.subscribe(subject, cb=callback)  # pragma: no cover


def flush_now(nc: NatsClient) -> None:
    """Write the connection's buffered commands to the socket now.

    nats-py's ``publish`` only appends to a buffer and wakes its flusher task, which writes at
    its next turn of the event loop, behind every callback already queued; under load that is
    a whole loop iteration of other streams' token work. Latency-critical messages (a new
    request, the first output of a stream) call this right after publishing, so they leave in
    the same iteration; everything else keeps the flusher's batching. Harmless when nothing
    is buffered or the connection is down (the flusher or the reconnect logic then owns the
    buffer), and if nats-py's internals ever change shape it does nothing.
    """
    pending = getattr(nc, "_pending", None)
    transport = getattr(nc, "_transport", None)
    if not pending or transport is None or not nc.is_connected:
        return
    transport.writelines(pending)
    nc._pending = []
    nc._pending_data_size = 0


class BatchedPublisher:
    """Publishes on a NATS connection without nats-py's per-message flusher round trip.

    nats-py's ``publish`` appends the PUB command to the connection's buffer, then creates a
    future, queues it for the flusher task and awaits the queue: per message a future, a queue
    hop and a flusher step, ~7 us of CPU per message on the 2-core test machine; the token
    stream is one message per token. Here (~2.3 us) a message is appended to the same buffer
    and one write per event-loop iteration is scheduled: everything published in an iteration
    (every stream's tokens of one engine step) leaves in one write, in order with whatever
    nats-py itself buffered. :meth:`publish` returns False when the fast path does
    not apply (not connected or draining, payload over the server's limit, the socket's write
    buffer backed up, nats-py's internals changed); the caller then awaits ``nc.publish``,
    which buffers, reconnects and pushes back as nats-py does.
    """

    __slots__ = ("_backed_up", "_loop", "_nc", "_scheduled")

    def __init__(self, nc: NatsClient) -> None:
        """Publish on ``nc`` (call from its event loop)."""
        self._nc = nc
        self._loop = asyncio.get_running_loop()
        self._scheduled = False
        self._backed_up = False  # as of the last write (checked once per write, not per message)

    def publish(self, subject: str, payload: bytes, reply: str = "") -> bool:
        """Queue ``payload`` on ``subject`` for this iteration's write; False: use ``nc.publish``."""
        nc = self._nc
        if self._backed_up:
            if _write_backlog(nc) > MAX_WRITE_BACKLOG:
                return False
            self._backed_up = False
        if nc._status != NatsClient.CONNECTED or len(payload) > nc._max_payload:
            return False
        cmd = b"PUB %b %b %d\r\n%b\r\n" % (subject.encode(), reply.encode(), len(payload), payload)
        nc._pending.append(cmd)
        nc._pending_data_size += len(cmd)
        stats = nc.stats
        stats["out_msgs"] += 1
        stats["out_bytes"] += len(payload)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._write)
        return True

    def _write(self) -> None:
        self._scheduled = False
        flush_now(self._nc)
        self._backed_up = _write_backlog(self._nc) > MAX_WRITE_BACKLOG


MAX_WRITE_BACKLOG: Final = 1 << 20
"""Bytes the socket may hold unsent before publishing goes back through nats-py's flusher."""


def _write_backlog(nc: NatsClient) -> int:
    """Bytes written to the connection's socket transport and not yet sent (0 if unknown)."""
    writer = getattr(nc._transport, "_io_writer", None)
    transport = getattr(writer, "transport", None)
    size = getattr(transport, "get_write_buffer_size", None)
    return int(size()) if size is not None else 0
