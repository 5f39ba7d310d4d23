"""``confirm_sent``: a round trip to nats-server that covers every command sent before it.

nats-py's ``flush()`` writes its PING ahead of commands still buffered, so the PONG may come
back before nats-server has seen a subscription made just before. On one machine that is a
race the server's read timing usually hides; here a proxy hands nats-server the client's
commands one at a time, a while apart, which turns the race into a certainty: with
``nc.flush()`` in place of ``confirm_sent`` these tests lose the message every time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from tests.runtime.support import OpenNats, eventually, nats_connections

from dgd_runtime.local.nats_server import NatsServer
from dgd_runtime.transport.fastsub import InboundMsg, confirm_sent, subscribe_direct


async def _read_command(reader: asyncio.StreamReader) -> bytes:
    """One client command as written on the wire (control line plus any payload)."""
    line = await reader.readuntil(b"\r\n")
    op, _, args = line.partition(b" ")
    if op.upper() in (b"PUB", b"HPUB"):
        size = int(args.split()[-1])
        line += await reader.readexactly(size + 2)
    return line


class _CommandAtATimeProxy:
    """Forwards a client's commands to nats-server one by one, ``gap`` seconds apart.

    What the server sends back is forwarded at once. ``sent`` records the client's commands
    in the order the server received them.
    """

    def __init__(self, upstream_port: int, gap: float) -> None:
        self._upstream_port = upstream_port
        self._gap = gap
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.sent: list[bytes] = []
        self.url = ""

    async def __aenter__(self) -> _CommandAtATimeProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"nats://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        self._writers += [client_w, server_w]
        for pipe in (self._to_server(client_r, server_w), self._to_client(server_r, client_w)):
            task = asyncio.create_task(pipe)
            self._tasks.add(task)

    async def _to_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                command = await _read_command(reader)
                await asyncio.sleep(self._gap)
                self.sent.append(command)
                writer.write(command)
                await writer.drain()

    async def _to_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()


Subscribe = Callable[[NatsClient, str, list[Any]], Awaitable[object]]


async def _nats_py_subscription(nc: NatsClient, subject: str, got: list[Any]) -> object:
    async def on_message(msg: Msg) -> None:
        got.append(msg)

    return await nc.subscribe(subject, cb=on_message)


async def _direct_subscription(nc: NatsClient, subject: str, got: list[Any]) -> object:
    handler: Callable[[InboundMsg], None] = got.append
    return await subscribe_direct(nc, subject, handler)


@pytest.fixture
async def connections() -> AsyncIterator[OpenNats]:
    """Opens connections (closed after the test); ``url`` picks the proxy or the server."""
    async with nats_connections() as open_connection:
        yield open_connection


@pytest.mark.runtime
@pytest.mark.parametrize(
    "subscribe", [_nats_py_subscription, _direct_subscription], ids=["nats-py", "direct"]
)
async def test_a_subscription_made_just_before_is_known_to_the_server_after_confirm_sent(
    nats_server: NatsServer, connections: OpenNats, subscribe: Subscribe
) -> None:
    async with _CommandAtATimeProxy(nats_server.port, gap=0.2) as proxy:
        nc = await connections(proxy.url, "slow-link")
        peer = await connections(nats_server.url, "peer")
        got: list[Any] = []
        await subscribe(nc, "confirm.x", got)
        await confirm_sent(nc)
        # The server answered the PING: it has processed the SUB, so this publish reaches nc.
        await peer.publish("confirm.x", b"after the round trip")
        await peer.flush()
        await eventually(lambda: bool(got), 5, "the message published after confirm_sent")
        assert [m.data for m in got] == [b"after the round trip"]
        subs = [i for i, c in enumerate(proxy.sent) if c.startswith(b"SUB confirm.x")]
        pings = [i for i, c in enumerate(proxy.sent) if c == b"PING\r\n"]
        assert subs and pings[-1] > subs[0]  # the round trip's PING went out behind the SUB


@pytest.mark.runtime
async def test_confirm_sent_covers_publishes_buffered_before_it(
    nats_server: NatsServer, connections: OpenNats
) -> None:
    async with _CommandAtATimeProxy(nats_server.port, gap=0.05) as proxy:
        nc = await connections(proxy.url, "slow-link")
        listener = await connections(nats_server.url, "listener")
        got: list[Msg] = []

        async def on_message(msg: Msg) -> None:
            got.append(msg)

        await listener.subscribe("confirm.y", cb=on_message)
        await listener.flush()  # nothing buffered on this one: flush alone is enough
        for n in range(3):
            await nc.publish("confirm.y", b"%d" % n)
        await confirm_sent(nc)
        # All three were processed by the server before the PONG; delivery to the listener is
        # one more hop, so wait for it, but the order of the wire is already settled.
        assert [c for c in proxy.sent if c.startswith(b"PUB")] == [
            b"PUB confirm.y  1\r\n%d\r\n" % n for n in range(3)
        ]
        await eventually(lambda: len(got) == 3, 5, "the three messages")
