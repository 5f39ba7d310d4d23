"""The NATS fast reader: hot plain messages parsed in the socket's read callback, the rest in order.

``_FastReader`` hooks the connection's ``asyncio.StreamReader.feed_data``. The parser tests drive
that hook exactly as the socket's protocol does (``reader.feed_data(chunk)``) on a stand-in for
nats-py's client that has only the private attributes the reader uses (``_subs``, ``stats``,
``_ps``, ``_transport._io_reader``, ``_reconnected_cb``): the reader is built on those internals
by design, and a stand-in lets one byte stream be cut at every boundary without a socket. The
stand-in's reader records what it is fed (what reaches nats-py's own parser) instead of
buffering it. The tests marked ``runtime`` check the same on a real nats-server connection.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from types import SimpleNamespace
from typing import Any, SupportsIndex, cast

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.protocol.parser import AWAITING_CONTROL_LINE, AWAITING_MSG_PAYLOAD, Parser
from tests.runtime.support import eventually, nats_connections

from dgd_runtime.local.nats_server import NatsServer, NatsServerUnavailableError
from dgd_runtime.transport.fastsub import (
    FastMsg,
    InboundMsg,
    _FastReader,
    confirm_sent,
    subscribe_direct,
)

HOT = 7  # the sid of the hot (subscribe_direct) subscription
COLD = 9  # the sid of an ordinary nats-py subscription


def _msg(subject: str, sid: int, data: bytes, reply: str = "") -> bytes:
    """A plain MSG as nats-server writes it."""
    reply_part = f"{reply} " if reply else ""
    return f"MSG {subject} {sid} {reply_part}{len(data)}\r\n".encode() + data + b"\r\n"


def _hmsg(subject: str, sid: int, headers: bytes, data: bytes, reply: str = "") -> bytes:
    """An HMSG (message with headers) as nats-server writes it."""
    reply_part = f"{reply} " if reply else ""
    sizes = f"{len(headers)} {len(headers) + len(data)}"
    return f"HMSG {subject} {sid} {reply_part}{sizes}\r\n".encode() + headers + data + b"\r\n"


Delivery = tuple[type, str, str, bytes, object]  # (class, subject, reply, data, headers)

# Every kind of operation nats-server sends, each with what the hot handler must receive (None:
# the operation belongs to nats-py and must reach its parser unchanged).
STREAM: list[tuple[bytes, Delivery | None]] = [
    (b'INFO {"server_id":"NX","max_payload":1048576,"headers":true}\r\n', None),
    (b"+OK\r\n", None),
    (_msg("out.1", HOT, b"hello"), (FastMsg, "out.1", "", b"hello", None)),
    (_msg("out.2", HOT, b"abc", "_INBOX.r"), (FastMsg, "out.2", "_INBOX.r", b"abc", None)),
    (b"PING\r\n", None),
    (_msg("other", COLD, b"cold"), None),
    (_hmsg("other", COLD, b"NATS/1.0 503\r\n\r\n", b"", "_INBOX.r"), None),
    (_hmsg("other", COLD, b"NATS/1.0\r\nK: v\r\n\r\n", b"with headers"), None),
    (b"PONG\r\n", None),
    (
        _msg("out.4", HOT, b"a\r\nMSG out.9 7 3\r\nxyz\r\nPING\r\n"),
        (FastMsg, "out.4", "", b"a\r\nMSG out.9 7 3\r\nxyz\r\nPING\r\n", None),
    ),
    (_msg("out.5", HOT, b""), (FastMsg, "out.5", "", b"", None)),
    (_msg("other", COLD, b"x\r\nMSG other 9 1\r\n", "r.1"), None),
    (b"-ERR 'Unknown Protocol Operation'\r\n", None),
    (_msg("out.6", HOT, b"HMSG ", "r.2"), (FastMsg, "out.6", "r.2", b"HMSG ", None)),
]
WIRE = b"".join(op for op, _ in STREAM)
HOT_DELIVERIES = [hot for _, hot in STREAM if hot is not None]
FORWARDED = b"".join(op for op, hot in STREAM if hot is None)


class _Sub:
    """The parts of a nats-py subscription the reader reads: its sid and received count."""

    def __init__(self, sid: int) -> None:
        self._id = sid
        self._received = 0


class _Reader(asyncio.StreamReader):
    """A socket's reader; its own ``feed_data`` records what is passed on to nats-py."""

    def __init__(self) -> None:
        super().__init__()
        self.forwarded: list[bytes] = []

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        self.forwarded.append(bytes(data))


class _Client:
    """The parts of nats-py's client the fast reader uses (see the module doc)."""

    def __init__(self, subs: list[_Sub]) -> None:
        self._subs = {sub._id: sub for sub in subs}
        self.stats = {"in_msgs": 0, "in_bytes": 0}
        self._ps = Parser()  # nats-py's parser, idle: the reader hooks in at once
        self.reader = _Reader()
        self._transport = SimpleNamespace(_io_reader=self.reader)
        self._reconnected_cb: Callable[[], Awaitable[None]] | None = None


def _hook(handler: Callable[[InboundMsg], None]) -> tuple[_Client, _Sub]:
    """A stand-in client (subscriptions HOT and COLD) with HOT registered as hot."""
    hot = _Sub(HOT)
    client = _Client([hot, _Sub(COLD)])
    _FastReader.register(cast(NatsClient, client), cast(Subscription, hot), handler)
    return client, hot


def _deliveries(msgs: list[InboundMsg]) -> list[Delivery]:
    return [(type(m), m.subject, m.reply, m.data, m.headers) for m in msgs]


def _chunkings(how: str) -> Iterator[list[bytes]]:
    if how == "whole":
        yield [WIRE]
    elif how == "every-two-way-split":
        for cut in range(1, len(WIRE)):
            yield [WIRE[:cut], WIRE[cut:]]
    else:
        yield [WIRE[i : i + 1] for i in range(len(WIRE))]


@pytest.mark.unit
@pytest.mark.parametrize("how", ["whole", "every-two-way-split", "byte-by-byte"])
async def test_hot_plain_messages_go_to_the_handler_and_everything_else_to_nats_py_in_order(
    how: str,
) -> None:
    for chunks in _chunkings(how):
        got: list[InboundMsg] = []
        client, hot = _hook(got.append)
        for chunk in chunks:
            client.reader.feed_data(chunk)
        where = f"chunks of {[len(c) for c in chunks][:3]}..."
        assert _deliveries(got) == HOT_DELIVERIES, where
        assert b"".join(client.reader.forwarded) == FORWARDED, where
        payloads = [delivery[3] for delivery in HOT_DELIVERIES]
        assert client.stats == {"in_msgs": len(payloads), "in_bytes": sum(map(len, payloads))}
        assert hot._received == len(payloads)


@pytest.mark.unit
async def test_messages_of_an_unsubscribed_hot_sid_go_to_nats_py_which_drops_them() -> None:
    got: list[InboundMsg] = []
    client, _ = _hook(got.append)
    del client._subs[HOT]  # what nats-py's unsubscribe does; the server may still have sent some
    late = _msg("out.1", HOT, b"late")
    client.reader.feed_data(late)
    assert (got, client.reader.forwarded, client.stats["in_msgs"]) == ([], [late], 0)


@pytest.mark.unit
async def test_a_failing_handler_is_logged_and_the_stream_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    got: list[InboundMsg] = []

    def handler(msg: InboundMsg) -> None:
        got.append(msg)
        if msg.data == b"boom":
            raise RuntimeError("handler bug")

    client, _ = _hook(handler)
    client.reader.feed_data(_msg("a", HOT, b"boom") + b"PING\r\n" + _msg("a", HOT, b"next"))
    assert [m.data for m in got] == [b"boom", b"next"]
    assert client.reader.forwarded == [b"PING\r\n"]
    assert "message handler for b'a' failed" in caplog.text


@pytest.mark.unit
async def test_the_hook_waits_until_nats_py_is_between_two_operations() -> None:
    hot = _Sub(HOT)
    client = _Client([hot])
    client._ps.state = AWAITING_MSG_PAYLOAD  # nats-py has read a MSG line, not its payload
    got: list[InboundMsg] = []
    _FastReader.register(cast(NatsClient, client), cast(Subscription, hot), got.append)
    rest = b"payload of nats-py's message\r\n" + _msg("out.1", HOT, b"early")
    client.reader.feed_data(rest)
    assert (got, client.reader.forwarded) == ([], [rest])  # all of it still nats-py's

    client._ps.state = AWAITING_CONTROL_LINE  # nats-py finished that operation
    fast = cast(_FastReader, getattr(client, _FastReader.ATTR))
    await eventually(lambda: fast._reader is client.reader, 5, "the reader hooked (a retry)")
    client.reader.feed_data(_msg("out.1", HOT, b"late"))
    assert _deliveries(got) == [(FastMsg, "out.1", "", b"late", None)]


BIG = (b"\r\nMSG x 7 1\r\n" + bytes(range(256))) * 7700  # ~2 MiB, with "\r\n" and "MSG " inside
CHUNK = 64 * 1024


@pytest.mark.unit
@pytest.mark.parametrize("sid", [HOT, COLD], ids=["hot", "cold"])
async def test_a_large_payload_arriving_in_parts_is_kept_in_parts_and_joined_once(
    sid: int,
) -> None:
    got: list[InboundMsg] = []
    client, _ = _hook(got.append)
    fast = cast(_FastReader, getattr(client, _FastReader.ATTR))
    op = _msg("big", sid, BIG)
    wire = op + b"PING\r\n"
    chunks = [wire[i : i + CHUNK] for i in range(0, len(wire), CHUNK)]
    assert len(chunks) > 30 and len(chunks[-1]) > len(b"PING\r\n")
    for i, chunk in enumerate(chunks[:-1]):
        client.reader.feed_data(chunk)
        assert (got, client.reader.forwarded) == ([], []), f"after chunk {i}"
        # White box, because a join per chunk would still deliver the right bytes (just in
        # quadratic time): the reader knows from the MSG line how much completes the
        # operation and keeps the parts unjoined until then.
        assert fast._need == len(op)
        assert (len(fast._pending), fast._pending_len) == (i + 1, (i + 1) * CHUNK)
    client.reader.feed_data(chunks[-1])
    if sid == HOT:
        assert _deliveries(got) == [(FastMsg, "big", "", BIG, None)]
        assert client.reader.forwarded == [b"PING\r\n"]
    else:
        assert got == []
        assert client.reader.forwarded == [wire]  # whole, in one piece
    assert (fast._pending, fast._pending_len, fast._need) == ([], 0, 0)


# ---------------------------------------------------------------- on a real nats-server


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A nats-server on a free loopback port, stopped by PID after the test."""
    try:
        server = NatsServer()
    except NatsServerUnavailableError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.close()


Connect = Callable[..., Awaitable[NatsClient]]


@pytest.fixture
async def connect(nats_server: NatsServer) -> AsyncIterator[Connect]:
    """Opens connections with the runtime's helper; closes them before the server stops."""
    async with nats_connections() as open_connection:

        async def to_server(name: str, **options: Any) -> NatsClient:
            return await open_connection(nats_server.url, name, **options)

        yield to_server


def _socket_reader(nc: NatsClient) -> asyncio.StreamReader:
    reader = getattr(nc._transport, "_io_reader", None)
    assert isinstance(reader, asyncio.StreamReader)
    return reader


@pytest.mark.runtime
async def test_on_a_real_connection_hot_messages_are_parsed_inline_and_the_rest_still_works(
    connect: Connect,
) -> None:
    nc = await connect("fast")
    peer = await connect("peer")
    hot: list[InboundMsg] = []
    inbox: list[InboundMsg] = []
    plain: list[Msg] = []

    async def on_plain(msg: Msg) -> None:
        plain.append(msg)

    async def respond(msg: Msg) -> None:
        ask = (msg.headers or {}).get("Ask", "")
        await peer.publish(msg.reply, b"re:" + msg.data, headers={"Echo": ask})

    direct = await subscribe_direct(nc, "fast.hot", hot.append)
    await subscribe_direct(nc, "fast.inbox.*", inbox.append)
    await nc.subscribe("fast.plain", cb=on_plain)
    await peer.subscribe("fast.svc", cb=respond)
    await confirm_sent(nc)
    await peer.flush()

    await peer.publish("fast.hot", b"one")
    await peer.publish("fast.hot", b"two", reply="fast.back")
    await peer.publish("fast.plain", b"three")
    await peer.flush()
    await eventually(lambda: len(hot) == 2 and len(plain) == 1, 5, "hot and plain messages")
    assert _deliveries(hot) == [
        (FastMsg, "fast.hot", "", b"one", None),
        (FastMsg, "fast.hot", "fast.back", b"two", None),
    ]
    assert plain[0].data == b"three"

    # A request with headers, answered with headers: HMSG on nats-py's own reply subscription.
    reply = await nc.request("fast.svc", b"ping", timeout=5, headers={"Ask": "x"})
    assert (reply.data, reply.headers) == (b"re:ping", {"Echo": "x"})

    # Nobody listens on the subject: the server answers "no responders" on the reply subject,
    # a hot subscription; the status (headers) reaches its handler through nats-py.
    await nc.publish("fast.nobody", b"", reply="fast.inbox.1")
    await eventually(lambda: bool(inbox), 5, "the no-responders status")
    (status,) = inbox
    assert not isinstance(status, FastMsg)
    assert status.subject == "fast.inbox.1"
    assert status.headers is not None and status.headers.get("Status") == "503"

    await direct.unsubscribe()
    await confirm_sent(nc)
    await peer.publish("fast.hot", b"late")
    await peer.publish("fast.plain", b"after")  # arrives behind "late" (one socket, in order)
    await peer.flush()
    await eventually(lambda: len(plain) == 2, 5, "the message behind the unsubscribed one")
    assert [m.data for m in hot] == [b"one", b"two"]


@pytest.mark.runtime
async def test_after_a_nats_server_restart_the_new_socket_is_hooked_too(
    connect: Connect, nats_server: NatsServer
) -> None:
    reconnected = asyncio.Event()

    async def on_reconnected() -> None:
        reconnected.set()

    nc = await connect("fast", on_reconnected=on_reconnected)
    peer = await connect("peer")
    hot: list[InboundMsg] = []
    await subscribe_direct(nc, "fast.hot", hot.append)
    await confirm_sent(nc)
    await peer.publish("fast.hot", b"before")
    await peer.flush()
    await eventually(lambda: bool(hot), 5, "a hot message before the restart")
    assert isinstance(hot[0], FastMsg)
    old_reader = _socket_reader(nc)

    await asyncio.to_thread(nats_server.restart, 0.2)
    await asyncio.wait_for(reconnected.wait(), 20)  # the caller's callback runs behind the hook
    assert _socket_reader(nc) is not old_reader

    async def parsed_inline_again() -> bool:
        # nats-py re-subscribed; until the hook is in (or while peer reconnects) a message may
        # come through nats-py's own path (a Msg) or be dropped, so keep publishing.
        await peer.publish("fast.hot", b"after")
        return any(isinstance(m, FastMsg) and m.data == b"after" for m in hot)

    await eventually(parsed_inline_again, 10, "a FastMsg after the restart", interval=0.05)


@pytest.mark.unit
async def test_after_a_hot_message_with_headers_the_rest_of_the_read_goes_to_nats_py() -> None:
    got: list[InboundMsg] = []
    client, _ = _hook(got.append)
    with_headers = _hmsg("out.3", HOT, b"NATS/1.0 503\r\n\r\n", b"", "_INBOX.r")
    after = _msg("out.3", HOT, b"after") + b"PING\r\n"
    client.reader.feed_data(with_headers + after)
    # nats-py delivers both, in order (its reader runs before the socket is read again)
    assert (got, client.reader.forwarded) == ([], [with_headers + after])
    client.reader.feed_data(_msg("out.3", HOT, b"next read"))
    assert [m.data for m in got] == [b"next read"]


@pytest.mark.runtime
async def test_a_hot_subscription_keeps_its_order_when_a_message_with_headers_comes_first(
    connect: Connect,
) -> None:
    nc = await connect("fast")
    got: list[InboundMsg] = []
    sub = await subscribe_direct(nc, "fast.hot", got.append)
    await confirm_sent(nc)
    first = _hmsg("fast.hot", sub._id, b"NATS/1.0\r\nK: v\r\n\r\n", b"first")
    second = _msg("fast.hot", sub._id, b"second")
    # What the socket hands over when a publisher's message with headers and its next plain
    # one arrive in one read, fed through the hooked reader as the socket's protocol does (a
    # publish from another connection arrives in one read only most of the time).
    _socket_reader(nc).feed_data(first + second)
    await eventually(lambda: len(got) == 2, 5, "both messages")
    assert [m.data for m in got] == [b"first", b"second"]  # NATS keeps a publisher's order
