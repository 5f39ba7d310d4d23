"""The request plane's batched publisher: nats-py's wire format, one write per loop iteration."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from nats.aio.client import Client as NatsClient
from nats.protocol.command import pub_cmd

from dgd_runtime.transport.fastsub import MAX_WRITE_BACKLOG, BatchedPublisher

pytestmark = pytest.mark.unit


class _Socket:
    def __init__(self) -> None:
        self.backlog = 0

    def get_write_buffer_size(self) -> int:
        return self.backlog


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self._io_writer = type("Writer", (), {})()
        self._io_writer.transport = self.socket = _Socket()

    def writelines(self, parts: list[bytes]) -> None:
        self.writes.append(b"".join(parts))


class _Nats:
    """The parts of nats-py's client the publisher touches."""

    def __init__(self) -> None:
        self._status = NatsClient.CONNECTED
        self._max_payload = 64
        self._pending: list[bytes] = []
        self._pending_data_size = 0
        self._transport = _Transport()
        self.stats: dict[str, Any] = {"out_msgs": 0, "out_bytes": 0}

    @property
    def is_connected(self) -> bool:
        return self._status == NatsClient.CONNECTED


async def test_messages_of_one_iteration_leave_in_one_write_in_nats_py_wire_format() -> None:
    nc = _Nats()
    pub = BatchedPublisher(cast(NatsClient, nc))
    assert pub.publish("_DGD.a.1", b"D1|[[5]]")
    assert pub.publish("ns.ctl", b"C8|_DGD.a.1", "_DGD.a.1")
    assert nc._transport.writes == []  # nothing written before the iteration ends
    await asyncio.sleep(0)
    assert nc._transport.writes == [
        pub_cmd("_DGD.a.1", "", b"D1|[[5]]") + pub_cmd("ns.ctl", "_DGD.a.1", b"C8|_DGD.a.1")
    ]
    assert (nc._pending, nc._pending_data_size) == ([], 0)
    assert nc.stats == {"out_msgs": 2, "out_bytes": 8 + 11}
    assert pub.publish("_DGD.a.1", b"D2|[[6]]")  # the next iteration: a new write
    await asyncio.sleep(0)
    assert nc._transport.writes[1:] == [pub_cmd("_DGD.a.1", "", b"D2|[[6]]")]


@pytest.mark.parametrize(
    ("status", "payload"),
    [
        (NatsClient.RECONNECTING, b"x"),  # nats-py buffers across the reconnect
        (NatsClient.DRAINING_PUBS, b"x"),  # nats-py refuses, as it should
        (NatsClient.CONNECTED, b"x" * 65),  # over max_payload: nats-py raises
    ],
)
async def test_falls_back_to_nats_py_and_leaves_the_buffer_alone(
    status: int, payload: bytes
) -> None:
    nc = _Nats()
    nc._status = status
    pub = BatchedPublisher(cast(NatsClient, nc))
    assert not pub.publish("s", payload)
    await asyncio.sleep(0)
    assert (nc._pending, nc._transport.writes, nc.stats["out_msgs"]) == ([], [], 0)


async def test_a_backed_up_socket_sends_publishers_back_to_nats_py_until_it_drains() -> None:
    nc = _Nats()
    pub = BatchedPublisher(cast(NatsClient, nc))
    nc._transport.socket.backlog = MAX_WRITE_BACKLOG + 1  # nats-server stopped reading
    assert pub.publish("s", b"1")
    await asyncio.sleep(0)  # the write finds the backlog
    assert not pub.publish("s", b"2")  # nats-py's flusher (which awaits drain) takes over
    assert not pub.publish("s", b"2")  # still backed up
    nc._transport.socket.backlog = 0  # drained
    nc._pending.append(b"PUB s  1\r\n2\r\n")  # what nats-py buffered, written by a later write
    assert pub.publish("s", b"3")
    await asyncio.sleep(0)
    assert nc._transport.writes[-1] == b"PUB s  1\r\n2\r\nPUB s  1\r\n3\r\n"
