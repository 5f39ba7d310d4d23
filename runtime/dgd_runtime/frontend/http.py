"""A small HTTP/1.1 server on asyncio.Protocol, built for streaming many small SSE events.

Why not a framework: per request the frontend needs only the request line, a few headers and
a Content-Length body, and per token one small write. Owning the protocol lets us keep the
per-token path to a list append, coalesce every event produced in one event-loop iteration
into a single chunked write, set TCP_NODELAY (see docs: Nagle + delayed ACK stalls keep-alive
streams by ~40 ms), and cancel the handler the moment the client goes away.

Supported: keep-alive, pipelined requests (served in order), `Expect: 100-continue`,
HTTP/1.0 (streams then close). Not supported: chunked request bodies (411). Requests over the
:class:`HttpLimits` get a status, never a dropped connection: a body over the limit 413, a
header block over its bytes or header count 431.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, cast

import orjson

from dgd_runtime.aio import EagerTask

LOG = logging.getLogger(__name__)

# An idle keep-alive connection (or one that never completes its request) is closed after this.
IDLE_TIMEOUT_S: Final = 75.0
# After refusing a request we keep reading (and discarding) what the client still sends for up
# to this long before closing: closing a socket with unread input makes the kernel send RST,
# and the client then sees "connection reset" instead of our 413/431.
LINGER_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one request may carry; larger requests are refused with 413 or 431."""

    max_body_bytes: int = 8 * 1024 * 1024
    """Content-Length above this is answered 413 (8 MiB: a few base64 data-URL images)."""
    max_header_bytes: int = 64 * 1024
    """Request line plus headers above this is answered 431."""
    max_headers: int = 100
    """More header fields than this is answered 431 (hyper's, and so Dynamo's, default)."""


REASONS: Final[dict[int, bytes]] = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    411: b"Length Required",
    413: b"Payload Too Large",
    422: b"Unprocessable Entity",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


class Request:
    """One parsed HTTP request."""

    __slots__ = ("body", "headers", "keep_alive", "method", "path", "query", "version")

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        version: str,
        headers: dict[str, str],
        body: bytes,
        keep_alive: bool,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


Handler = Callable[[Request, "Connection"], Awaitable[None]]


class ClientGoneError(ConnectionError):
    """The client closed the connection while we were writing to it."""


class Connection(asyncio.Protocol):
    """Server side of one TCP connection: parses requests and runs the handler for each.

    It may be fed a request (:meth:`data_received`) before the transport exists
    (:class:`HttpServer` reads the first bytes when it accepts): until ``connection_made``
    what it writes is kept, and a close or half-close is carried out once the transport is there.
    """

    def __init__(
        self,
        handler: Handler,
        loop: asyncio.AbstractEventLoop,
        registry: set[Connection] | None = None,
        limits: HttpLimits | None = None,
    ) -> None:
        self._handler = handler
        self._limits = limits or HttpLimits()
        self._refused = False
        self._registry = registry
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._task: EagerTask[None] | None = None
        self._closed = False
        self._paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._pending: list[bytes] = []
        self._flush_scheduled = False
        self._chunked = False
        self._sent_headers = False
        self._keep_alive = True
        self._continue_sent = False
        self._head_pending: bytes | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._early: list[bytes] = []  # written before connection_made
        self._close_requested = False  # closed before connection_made

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        tr = self._transport = cast(asyncio.Transport, transport)
        if self._closed:  # aborted before the transport existed
            tr.abort()
            return
        if self._registry is not None:
            self._registry.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._early:
            tr.write(b"".join(self._early))
            self._early.clear()
        if self._refused:
            self._linger()
        elif self._close_requested:
            self._close()
        elif self._task is None:
            self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the rest of a refused request: read so the client gets our answer
        self._buf += data
        if self._task is None:
            self._parse()

    def eof_received(self) -> bool | None:
        if self._task is None or self._refused:
            self._close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._idle is not None:
            self._idle.cancel()
        if self._registry is not None:
            self._registry.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._wake_drain()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drain()

    # -- request parsing ----------------------------------------------------------------------
    def _parse(self) -> None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        limits = self._limits
        if end == -1:
            if len(buf) > limits.max_header_bytes:
                self._fail(431, f"request headers exceed {limits.max_header_bytes} bytes")
            return
        if end > limits.max_header_bytes:
            self._fail(431, f"request headers exceed {limits.max_header_bytes} bytes")
            return
        try:
            head = bytes(buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            if len(lines) - 1 > limits.max_headers:
                self._fail(431, f"more than {limits.max_headers} request header fields")
                return
            method, target, version = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        except ValueError:
            self._fail(400, "malformed HTTP request line or header")
            return
        if not version.startswith("HTTP/1."):
            self._fail(400, "unsupported HTTP version")
            return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._fail(411, "chunked request bodies are not supported; send Content-Length")
            return
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._fail(400, "invalid Content-Length")
            return
        if length < 0:
            self._fail(400, "invalid Content-Length")
            return
        if length > limits.max_body_bytes:
            self._fail(413, f"request body of {length} bytes exceeds {limits.max_body_bytes}")
            return
        start = end + 4
        if len(buf) - start < length:
            if not self._continue_sent and headers.get("expect", "").lower() == "100-continue":
                self._continue_sent = True
                self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        body = bytes(buf[start : start + length])
        del buf[: start + length]
        self._continue_sent = False
        conn_hdr = headers.get("connection", "").lower()
        keep_alive = conn_hdr != "close" if version == "HTTP/1.1" else conn_hdr == "keep-alive"
        path, _, query = target.partition("?")
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        request = Request(method, path, query, version, headers, body, keep_alive)
        self._keep_alive = keep_alive
        self._sent_headers = False
        self._chunked = False
        # Started eagerly: the handler parses, tokenizes and routes the request now, not one
        # loop iteration later (dgd_runtime.aio). It may finish (and clear _task) in start().
        task = self._task = EagerTask(self._run(request))
        task.start()

    async def _run(self, request: Request) -> None:
        try:
            await self._handler(request, self)
        except (asyncio.CancelledError, ClientGoneError):
            self._close()
            return
        except Exception:
            LOG.exception("unhandled error serving %s %s", request.method, request.path)
            if self._sent_headers:
                self._close()
                return
            self.send(
                500,
                b'{"error":{"message":"internal server error","type":"internal_error",'
                b'"param":null,"code":500}}',
            )
        self._task = None
        if not self._sent_headers:
            self.send(
                500,
                b'{"error":{"message":"no response","type":"internal_error",'
                b'"param":null,"code":500}}',
            )
        if self._closed or (self._transport is not None and self._transport.is_closing()):
            return
        if not self._keep_alive:
            self._flush()
            self._close()
            return
        self._arm_idle()
        if self._buf:
            self._parse()

    def _arm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = self._loop.call_later(IDLE_TIMEOUT_S, self._close)

    def _fail(self, status: int, message: str) -> None:
        body = orjson.dumps(
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": status,
                }
            }
        )
        self._keep_alive = False
        self._write(_head(status, b"application/json", len(body), False, ()) + body)
        self._linger()

    def _linger(self) -> None:
        """Half-close after a refusal; discard input until the client closes or LINGER_S."""
        self._refused = True
        self._buf.clear()
        transport = self._transport
        if transport is None or transport.is_closing():
            return  # connection_made lingers when it comes
        if not transport.can_write_eof():
            self._close()
            return
        transport.write_eof()
        if self._idle is not None:
            self._idle.cancel()
        self._idle = self._loop.call_later(LINGER_S, self._close)

    # -- response writing ---------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once the client has gone away."""
        return self._closed

    def send(
        self,
        status: int,
        body: bytes,
        content_type: bytes = b"application/json",
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        """Send a complete response with Content-Length."""
        self._sent_headers = True
        self._write(_head(status, content_type, len(body), self._keep_alive, headers) + body)

    def start_stream(
        self,
        status: int = 200,
        content_type: bytes = b"text/event-stream",
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        """Send response headers for a streamed body (chunked on HTTP/1.1)."""
        self._sent_headers = True
        lines = [
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nCache-Control: no-cache\r\n"
            % (status, REASONS.get(status, b"Unknown"), content_type)
        ]
        if self._keep_alive:
            self._chunked = True
            lines.append(b"Transfer-Encoding: chunked\r\n")
        else:
            lines.append(b"Connection: close\r\n")
        lines.extend(b"%s: %s\r\n" % kv for kv in headers)
        lines.append(b"\r\n")
        self._head_pending = b"".join(lines)
        self._schedule_flush()

    def stream(self, *parts: bytes) -> None:
        """Queue body bytes; everything queued in one loop iteration goes out in one write."""
        self._pending.extend(parts)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def flush(self) -> None:
        """Write what is queued now rather than at the end of this loop iteration.

        For a stream's first event: under load an iteration is long (every other stream's
        tokens), and the first event is what the client's time to first token waits for.
        """
        if self._pending or self._head_pending:
            self._flush()

    def end_stream(self) -> None:
        """Terminate the streamed body (together with anything still queued: one write)."""
        if self._chunked:
            self._flush(terminate=True)
        else:
            self._flush()

    async def drain(self) -> None:
        """Wait while the socket's write buffer is above the high-water mark."""
        if self._closed:
            raise ClientGoneError()
        if not self._paused:
            return
        self._flush()
        waiter = self._loop.create_future()
        self._drain_waiter = waiter
        await waiter
        if self._closed:
            raise ClientGoneError()

    @property
    def write_paused(self) -> bool:
        """True while the transport asks us to stop writing."""
        return self._paused

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self, terminate: bool = False) -> None:
        self._flush_scheduled = False
        head, self._head_pending = self._head_pending, None
        pending = self._pending
        if pending:
            data = b"".join(pending)
            pending.clear()
            if self._chunked:
                data = b"%x\r\n%s\r\n%s" % (len(data), data, b"0\r\n\r\n" if terminate else b"")
            self._write(head + data if head else data)
        elif head or terminate:
            self._write((head or b"") + (b"0\r\n\r\n" if terminate else b""))

    def _write(self, data: bytes) -> None:
        if self._closed:
            return
        if self._transport is not None:
            self._transport.write(data)
        else:
            self._early.append(data)

    def _wake_drain(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def abort(self) -> None:
        """Drop the connection now (server shutdown)."""
        if self._transport is not None:
            self._transport.abort()
        elif not self._closed:
            # No transport yet to report the loss: the same as losing it (connection_made,
            # if it still comes, drops the transport).
            self.connection_lost(None)

    def _close(self) -> None:
        if self._transport is None:
            self._close_requested = True
        elif not self._transport.is_closing():
            self._transport.close()


def _head(
    status: int,
    content_type: bytes,
    length: int,
    keep_alive: bool,
    headers: tuple[tuple[bytes, bytes], ...],
) -> bytes:
    extra = b"".join(b"%s: %s\r\n" % kv for kv in headers)
    return b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n" % (
        status,
        REASONS.get(status, b"Unknown"),
        content_type,
        length,
        b"" if keep_alive else b"Connection: close\r\n",
        extra,
    )


ACCEPT_BATCH: Final = 128
"""Connections accepted per readiness event of a listening socket (bounded, so a connection
flood cannot keep the loop from the streams it is serving)."""

EARLY_READ_BYTES: Final = 64 * 1024
"""What is read from a connection as it is accepted (the rest comes through the transport)."""

ACCEPT_PAUSE_S: Final = 0.5
"""After running out of file descriptors, stop accepting for this long (the kernel keeps the
pending connections in the backlog meanwhile)."""

_OUT_OF_RESOURCES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class HttpServer:
    """Listening sockets plus the set of open connections (so close() can drop them).

    Why not ``loop.create_server``: libuv (under uvloop, since 1.45) accepts one connection per
    event-loop iteration. Under load an iteration carries every stream's tokens (1-10 ms), so
    new connections queued in the kernel's accept backlog for hundreds of milliseconds: with
    256 clients opening a connection per request, ~150 sat in the backlog, 387 ms of a 406 ms
    time to first token. Here each readiness event of a listening socket accepts every pending
    connection (up to :data:`ACCEPT_BATCH`), as asyncio's own selector loop and hyper do, and
    hands each socket to the loop's ``connect_accepted_socket``, started eagerly.
    """

    def __init__(self, handler: Handler, limits: HttpLimits | None = None) -> None:
        """Serve ``handler`` once :meth:`start` is called."""
        self.handler = handler
        self.limits = limits or HttpLimits()
        self.connections: set[Connection] = set()
        self.sockets: list[socket.socket] = []
        self._adopting: dict[socket.socket, EagerTask[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resume: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int, backlog: int = 2048) -> int:
        """Listen on host:port; returns the bound port (useful with port 0).

        A host name that resolves to several addresses (``localhost``) gets a socket per
        address, all on the same port.
        """
        loop = self._loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        seen: set[tuple[int, str]] = set()
        try:
            for family, _, _, _, addr in infos:
                key = (int(family), str(addr[0]))
                if key in seen:
                    continue
                seen.add(key)
                bind_port = port or (self.port if self.sockets else 0)
                sock = socket.create_server(
                    (key[1], bind_port), family=family, backlog=backlog, reuse_port=False
                )
                sock.setblocking(False)
                self.sockets.append(sock)
        except BaseException:
            self._close_sockets()
            raise
        if not self.sockets:
            raise OSError(f"no address to listen on for {host!r}")
        self._watch_sockets()
        return self.port

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self.sockets[0].getsockname()[1])

    def _watch_sockets(self) -> None:
        """Accept from every listening socket when it is readable."""
        assert self._loop is not None
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        loop = self._loop
        assert loop is not None
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up before we got to it
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    LOG.error("accept() failed: %s", exc)
                    return
                LOG.warning(
                    "cannot accept connections (%s); pausing accepts for %.1f s",
                    exc.strerror,
                    ACCEPT_PAUSE_S,
                )
                self._pause_accepting()
                return
            conn.setblocking(False)
            # A client sends its request right after connecting, so it is usually here
            # already: read it now and start its handler in this callback. Through the
            # transport it would be read two loop iterations later (connection_made, then
            # the next poll), each one a full iteration under load.
            try:
                first = conn.recv(EARLY_READ_BYTES)
            except (BlockingIOError, InterruptedError):
                first = None
            except OSError:  # reset already
                conn.close()
                continue
            if first == b"":  # closed without a request
                conn.close()
                continue
            protocol = Connection(self.handler, loop, self.connections, self.limits)
            self.connections.add(protocol)
            if first:
                protocol.data_received(first)
            # Eagerly: the transport exists (and reads) from this callback on.
            adopt = self._adopting[conn] = EagerTask(self._adopt(conn, protocol))
            adopt.start()

    async def _adopt(self, conn: socket.socket, protocol: Connection) -> None:
        assert self._loop is not None
        try:
            await self._loop.connect_accepted_socket(lambda: protocol, conn)
        except (OSError, asyncio.CancelledError) as exc:  # reset by the peer; loop shutdown
            LOG.debug("dropping an accepted connection: %r", exc)
            protocol.abort()
            conn.close()
        finally:
            self._adopting.pop(conn, None)

    def _pause_accepting(self) -> None:
        loop = self._loop
        assert loop is not None
        for sock in self.sockets:
            loop.remove_reader(sock.fileno())

        def resume() -> None:
            self._resume = None
            self._watch_sockets()

        self._resume = loop.call_later(ACCEPT_PAUSE_S, resume)

    def _close_sockets(self) -> None:
        loop = self._loop
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        for sock in self.sockets:
            if loop is not None and sock.fileno() != -1:
                loop.remove_reader(sock.fileno())
            sock.close()
        self.sockets.clear()

    async def close(self) -> None:
        """Stop listening and abort every open connection (cancelling their handlers)."""
        self._close_sockets()
        # Let hand-overs finish (one loop iteration): cancelling one under uvloop closes its
        # transport without connection_lost, so its handler would never be cancelled.
        for adopt in list(self._adopting.values()):
            await adopt.wait()
        for conn in list(self.connections):
            conn.abort()
