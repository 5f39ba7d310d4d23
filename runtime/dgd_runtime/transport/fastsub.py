"""Hot-path shortcuts around nats-py: inline subscriptions, batched publishes, immediate flushes.

Subscriptions whose messages are handled inline, without a queue hop or a task switch:

nats-py hands each message to a per-subscription ``asyncio.Queue`` drained by a task that
awaits the callback: two extra scheduling steps per message. For the token stream that is a
large share of the client's per-message cost, so hot subscriptions here use a queue whose
``put_nowait`` calls a plain (synchronous, non-blocking) handler directly. Handlers must not
block; anything that needs to await spawns a task. If nats-py's internals ever change shape,
:func:`subscribe_direct` falls back to an ordinary callback subscription.

Further, the connection's incoming bytes are parsed where they arrive (:class:`_FastReader`,
hooked into the socket's ``StreamReader``): a plain ``MSG`` for a hot subscription goes to its
handler from the socket's read callback, and everything else (PING, INFO, headers, other
subscriptions) is passed on, in order, to nats-py's own reader task. Without it every batch of
messages waits one more event-loop iteration for that task to wake, which under load is a
whole iteration of other streams' work, and nats-py's parser deletes each message from the
front of its buffer (a copy of the rest of the buffer per message).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final, Protocol

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)


class InboundMsg(Protocol):
    """What a hot handler reads of a message (nats-py's ``Msg`` and :class:`FastMsg`)."""

    @property
    def subject(self) -> str:
        """The subject it was published on."""

    @property
    def reply(self) -> str:
        """Its reply subject ("" if none)."""

    @property
    def data(self) -> bytes:
        """The payload."""

    @property
    def headers(self) -> dict[str, str] | None:
        """Headers (None for a plain MSG)."""


MsgHandler = Callable[[InboundMsg], None]


class FastMsg:
    """A plain MSG parsed by :class:`_FastReader`."""

    __slots__ = ("data", "reply", "subject")

    headers: None = None

    def __init__(self, subject: str, reply: str, data: bytes) -> None:
        self.subject = subject
        self.reply = reply
        self.data = data


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
        _FastReader.register(nc, sub, handler)
        return sub
    await sub.unsubscribe()  # pragma: no cover - only if nats-py's internals change

    async def callback(msg: Msg) -> None:  # pragma: no cover
        handler(msg)

    return await nc.subscribe(subject, cb=callback)  # pragma: no cover


class _FastReader:
    """Parses a connection's incoming bytes in the socket's read callback (see module doc).

    Installed on the connection's current ``StreamReader`` when nats-py's parser sits between
    two operations (so the two parsers never split one), and again after every reconnect.
    """

    __slots__ = ("_forward", "_handlers", "_nc", "_need", "_pending", "_pending_len", "_reader")

    ATTR: Final = "_dgd_fast_reader"

    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._handlers: dict[int, tuple[Subscription, MsgHandler]] = {}
        self._reader: asyncio.StreamReader | None = None
        self._forward: Callable[[bytes], None] | None = None
        self._pending: list[bytes] = []  # the start of an incomplete operation
        self._pending_len = 0
        self._need = 0  # bytes that complete it, when known (a large payload arrives in parts)

    @classmethod
    def register(cls, nc: NatsClient, sub: Subscription, handler: MsgHandler) -> None:
        """Send plain messages of ``sub`` to ``handler`` from the socket's read callback."""
        fast: _FastReader | None = getattr(nc, cls.ATTR, None)
        if fast is None:
            fast = cls(nc)
            setattr(nc, cls.ATTR, fast)
            # After a reconnect the socket (and its reader) is new: hook that one too.
            user_cb = nc._reconnected_cb

            async def reconnected() -> None:
                assert fast is not None
                fast.install()
                if user_cb is not None:
                    await user_cb()

            nc._reconnected_cb = reconnected
        fast._handlers[sub._id] = (sub, handler)
        fast.install()

    def install(self, attempts: int = 50) -> None:
        """Hook the current reader, now or (nats-py mid-operation) a little later."""
        reader = getattr(getattr(self._nc, "_transport", None), "_io_reader", None)
        if not isinstance(reader, asyncio.StreamReader) or reader is self._reader:
            return
        ps = self._nc._ps
        if getattr(reader, "_buffer", b"") or ps.buf or ps.state != 1:
            if attempts > 0:  # nats-py holds part of an operation: hook it between two
                asyncio.get_running_loop().call_later(0.01, self.install, attempts - 1)
            return
        self._reader = reader
        self._forward = reader.feed_data
        self._pending.clear()
        self._pending_len = self._need = 0
        reader.feed_data = self._feed  # type: ignore[method-assign,assignment]

    def _feed(self, chunk: bytes) -> None:
        pending = self._pending
        if pending:
            pending.append(chunk)
            self._pending_len += len(chunk)
            if self._pending_len < self._need:
                return  # joined once, when the whole operation is here
            data = b"".join(pending)
            pending.clear()
        else:
            data = bytes(chunk)
        self._need = 0
        n = len(data)
        pos = 0
        handlers = self._handlers
        subs = self._nc._subs
        stats = self._nc.stats
        forward: list[bytes] = []
        # After a hot subscription's message with headers (nats-py delivers it, one loop step
        # later), the rest of this read goes to nats-py too, so that subscription's messages
        # keep their order; the next read comes after nats-py's reader ran.
        inline = True
        while pos < n:
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                break
            if data.startswith(b"MSG ", pos):
                args = data[pos + 4 : eol].split(b" ")
                try:
                    end = eol + 2 + int(args[-1])
                    sid = int(args[1])
                except (ValueError, IndexError):
                    forward.append(data[pos:])  # nats-py reports the protocol error
                    pos = n
                    break
                if end + 2 > n:
                    self._need = end + 2 - pos
                    break
                entry = handlers.get(sid)
                if entry is not None and subs.get(sid) is not entry[0]:
                    del handlers[sid]  # unsubscribed
                    entry = None
                if entry is None or not inline:
                    forward.append(data[pos : end + 2])
                else:
                    payload = data[eol + 2 : end]
                    stats["in_msgs"] += 1
                    stats["in_bytes"] += len(payload)
                    entry[0]._received += 1
                    reply = args[2].decode() if len(args) == 4 else ""
                    try:
                        entry[1](FastMsg(args[0].decode(), reply, payload))
                    except Exception:
                        log.exception("message handler for %s failed", args[0])
                pos = end + 2
            elif data.startswith(b"HMSG ", pos):
                args = data[pos + 5 : eol].split(b" ")
                try:
                    end = eol + 2 + int(args[-1])
                except ValueError:
                    forward.append(data[pos:])
                    pos = n
                    break
                if end + 2 > n:
                    self._need = end + 2 - pos
                    break
                forward.append(data[pos : end + 2])  # headers: nats-py parses them
                if len(args) > 1 and args[1].isdigit() and int(args[1]) in handlers:
                    inline = False
                pos = end + 2
            else:  # PING, PONG, INFO, +OK, -ERR
                forward.append(data[pos : eol + 2])
                pos = eol + 2
        if pos < n:
            pending.append(data[pos:])
            self._pending_len = n - pos
        else:
            self._pending_len = 0
        if forward and self._forward is not None:
            self._forward(b"".join(forward))


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


async def confirm_sent(nc: NatsClient, timeout: int = 10) -> None:
    """Return once nats-server has processed everything sent on ``nc`` before this call.

    ``nc.flush()`` alone does not promise that in nats-py 2.15 and 2.16: it writes its PING
    straight to the socket, ahead of the commands still in the connection's buffer, so a
    ``SUB`` made just before goes out after the PING and the PONG can come back before the
    server knows the subscription (a publish from another connection is then lost; seen as ~7%
    of subscribe-flush-publish sequences on the test machine). Writing the buffer first puts
    the PING behind everything sent so far, which is what the round trip is meant to cover.
    """
    flush_now(nc)
    await nc.flush(timeout)


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
