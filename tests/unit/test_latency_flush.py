"""Writes on the time-to-first-token path leave at once instead of at the loop's next turn."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from nats.aio.client import Client as NatsClient

from dgd_runtime.frontend.http import Connection, Request
from dgd_runtime.transport.fastsub import flush_now

pytestmark = pytest.mark.unit


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def writelines(self, parts: list[bytes]) -> None:
        self.writes.append(b"".join(parts))

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> Any:
        return None

    def close(self) -> None:
        pass


async def _noop(request: Request, conn: Connection) -> None:
    return None


async def test_connection_flush_writes_the_first_event_now() -> None:
    loop = asyncio.get_running_loop()
    conn = Connection(_noop, loop)
    transport = _Transport()
    conn.connection_made(cast(asyncio.Transport, transport))
    conn.start_stream()
    conn.stream(b"data: first\n\n")
    assert transport.writes == []  # batched until the end of this loop iteration...
    conn.flush()  # ...unless flushed
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"d\r\ndata: first\n\n\r\n")
    conn.stream(b"data: second\n\n")
    await asyncio.sleep(0)  # the already scheduled flush writes only what came later
    await asyncio.sleep(0)
    assert transport.writes[1:] == [b"e\r\ndata: second\n\n\r\n"]
    conn.flush()  # nothing queued: nothing written
    assert len(transport.writes) == 2


class _Nats:
    def __init__(self, connected: bool) -> None:
        self._pending = [b"PUB a 1\r\nx\r\n", b"PUB b 1\r\ny\r\n"]
        self._pending_data_size = 24
        self._transport = _Transport()
        self.is_connected = connected


def test_flush_now_writes_the_nats_buffer_and_empties_it() -> None:
    nc = _Nats(connected=True)
    flush_now(cast(NatsClient, nc))
    assert nc._transport.writes == [b"PUB a 1\r\nx\r\nPUB b 1\r\ny\r\n"]
    assert (nc._pending, nc._pending_data_size) == ([], 0)
    flush_now(cast(NatsClient, nc))  # empty buffer: no write
    assert len(nc._transport.writes) == 1


def test_flush_now_leaves_the_buffer_to_nats_py_while_disconnected() -> None:
    nc = _Nats(connected=False)
    flush_now(cast(NatsClient, nc))
    assert nc._transport.writes == []
    assert len(nc._pending) == 2
