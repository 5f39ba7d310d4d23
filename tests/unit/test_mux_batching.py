"""Batched frames on the worker side: one message per client per loop iteration, in order.

The runtime tier covers batched and per-inbox streams end to end over a real nats-server; here
the endpoint server talks to a recording stand-in for nats-py's client (publish order is what
matters, and a frame too large to share a message must not overtake the ones queued before it).
"""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from nats.aio.client import Client as NatsClient

from dgd_runtime.engines.mock.engine import MockEngine
from dgd_runtime.protocol import PreprocessedRequest, SamplingOptions
from dgd_runtime.transport import wire
from dgd_runtime.transport.server import EndpointServer, _ServerStream

pytestmark = pytest.mark.unit


class _Nats:
    """Records publishes (subject, payload, reply) in order; no batched fast path."""

    max_payload = 4096

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, str]] = []

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        self.published.append((subject, payload, reply))


def _server() -> tuple[EndpointServer, _Nats]:
    nc = _Nats()
    server = EndpointServer(cast(NatsClient, nc), "rq.w1", MockEngine())
    return server, nc


def _stream(n: int, mux: str | None = "_DGD.ab.m") -> _ServerStream:
    request = PreprocessedRequest(f"r{n}", "m", [1, 2], SamplingOptions())
    st = _ServerStream(f"_DGD.ab.{n}", request, 16)
    if mux is not None:
        st.mux, st.mux_token = mux, str(n).encode()
    return st


async def _next_iteration() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_frames_of_one_iteration_go_out_as_one_message_per_client() -> None:
    server, nc = _server()
    a, b, other = _stream(1), _stream(2), _stream(7, mux="_DGD.cd.m")
    other.inbox = "_DGD.cd.7"
    for st, frame in ((a, b"D1|x"), (b, b"D1|y"), (a, b"D2|z"), (other, b"D1|w")):
        assert await server._send_frame(st, frame)
    assert nc.published == []  # nothing leaves before the end of the iteration
    await _next_iteration()
    by_subject = {subject: wire.split_mux(payload) for subject, payload, _ in nc.published}
    assert by_subject == {
        "_DGD.ab.m": [(b"1", b"D1|x"), (b"2", b"D1|y"), (b"1", b"D2|z")],
        "_DGD.cd.m": [(b"7", b"D1|w")],
    }
    assert (server.counters.batches_sent, server.counters.messages_sent) == (2, 4)


async def test_a_batch_never_exceeds_the_servers_max_payload() -> None:
    server, nc = _server()
    st = _stream(1)
    frames = [b"D%d|%s" % (i, b"x" * 1000) for i in range(1, 10)]
    for frame in frames:
        await server._send_frame(st, frame)
    await _next_iteration()
    assert len(nc.published) > 1
    assert all(len(payload) <= _Nats.max_payload for _, payload, _ in nc.published)
    sent = [f for _, payload, _ in nc.published for _, f in wire.split_mux(payload)]
    assert sent == frames


async def test_a_frame_too_large_to_share_a_message_goes_alone_after_the_queued_ones() -> None:
    server, nc = _server()
    st = _stream(1)
    await server._send_frame(st, b"D1|small")
    big = b"D2|" + b"x" * _Nats.max_payload
    await server._send_frame(st, big)
    await _next_iteration()
    assert [(subject, reply) for subject, _, reply in nc.published] == [
        ("_DGD.ab.m", ""),
        ("_DGD.ab.1", ""),
    ]
    assert wire.split_mux(nc.published[0][1]) == [(b"1", b"D1|small")]
    assert nc.published[1][1] == big


async def test_a_client_without_a_mux_subject_gets_each_frame_on_its_inbox() -> None:
    server, nc = _server()
    st = _stream(1, mux=None)
    await server._send_frame(st, b"D1|x")
    await server._send_frame(st, b"D2|y")
    await _next_iteration()
    assert nc.published == [("_DGD.ab.1", b"D1|x", ""), ("_DGD.ab.1", b"D2|y", "")]
    assert server.counters.batches_sent == 0


class _SlowNats(_Nats):
    """nats-py's shape: the command is queued at once, then the publish waits (a flush)."""

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        self.published.append((subject, payload, reply))
        await asyncio.sleep(0)


async def test_batches_through_nats_py_keep_their_order_and_are_released() -> None:
    nc = _SlowNats()
    server = EndpointServer(cast(NatsClient, nc), "rq.w1", MockEngine())
    st = _stream(1)
    await server._send_frame(st, b"D1|a")
    server._flush_mux()  # first batch: its publish is still waiting
    await server._send_frame(st, b"D2|b")
    server._flush_mux()
    assert [wire.split_mux(p) for _, p, _ in nc.published] == [[(b"1", b"D1|a")], [(b"1", b"D2|b")]]
    assert len(server._bg_eager) == 2  # held until their publishes end
    await _next_iteration()
    assert server._bg_eager == set()
