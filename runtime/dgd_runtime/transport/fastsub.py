"""Hot-path shortcuts around nats-py: inline subscriptions and immediate flushes.

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
