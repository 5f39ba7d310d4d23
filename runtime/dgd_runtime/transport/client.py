"""Client side of the request plane: open response streams to worker instances.

One wildcard subscription ``<prefix>.*`` receives every stream of this client; each request
gets its own inbox subject ``<prefix>.<n>``. The consumer grants credits back in batches of
half the window, so the worker never has more than ``window`` unread messages in flight.

A consumer that only writes plain tokens somewhere (the frontend: one SSE event each) can
take them in the subscription callback instead (:meth:`ResponseStream.set_sink`): then most
tokens wake no coroutine at all.

The window is small (16 messages) on purpose: it is what makes tokens coalesce when this
consumer lags. A worker out of credits stops pulling from its engine, the engine keeps
collecting the stream's tokens, and the next message carries all of them, so under load the
number of messages (and their per-message cost in the worker, nats-server and here) falls
while nothing changes for a consumer that keeps up (then each message is one token and the
extra credit messages are cheap). With 64, a loaded frontend had up to 64 single-token
messages per stream queued ahead of every new stream's first output on the one NATS socket;
frontend CPU per request fell from ~1.8-2.7 to ~1.3-1.5 ms with 8-16 at c=64/256.

Failure detection without hanging:
- request or control message to a worker with no subscription → the server answers
  "no responders" (status 503) on the inbox at once → :class:`WorkerUnreachableError`;
- a stream silent for ``ping_after`` s (0.3) gets a ping, answered by a keepalive; the ping
  of a SIGKILLed worker comes back as "no responders" at once (its subscriptions died with its
  TCP connection), so a dead worker is noticed ~0.3-0.4 s after its last frame. A worker that
  is connected but wedged is given up on after ``dead_after`` s (5) more of silence (workers
  also send keepalives on streams idle for 0.5 s);
- discovery dropping an instance fails its streams at once (:meth:`StreamClient.fail_instance`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Callable

from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription

from dgd_runtime.aio import EagerTask
from dgd_runtime.protocol import (
    EngineOutput,
    PreprocessedRequest,
    RequestTooLargeError,
    RuntimeProtocolError,
    WorkerInstance,
    WorkerLostError,
    decode_output,
)
from dgd_runtime.transport import wire
from dgd_runtime.transport.fastsub import (
    BatchedPublisher,
    InboundMsg,
    flush_now,
    subscribe_direct,
)
from dgd_runtime.transport.subjects import control_subject

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 16

TokenSink = Callable[[int], bool]
"""Takes one token of a stream as it arrives; False declines it (see ResponseStream.set_sink)."""


class WorkerUnreachableError(RuntimeError):
    """The worker has no subscription on its subject (dead or gone): nothing was started."""


class WorkerRefusedError(RuntimeError):
    """The worker refused the request before starting it (draining)."""


class ResponseStream:
    """The receiving end of one request's output stream."""

    __slots__ = (
        "_buf",
        "_client",
        "_consumed",
        "_error",
        "_finished",
        "_received",
        "_sink",
        "_waiter",
        "control_subject",
        "inbox",
        "instance",
        "last_rx",
        "pinged",
        "started",
        "window",
    )

    def __init__(
        self, client: StreamClient, inbox: str, instance: WorkerInstance, window: int
    ) -> None:
        """Internal: use :meth:`StreamClient.open`."""
        self._client = client
        self.inbox = inbox
        self.instance = instance
        self.control_subject = control_subject(instance.subject)
        self.window = window
        self._buf: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._finished = False
        self._consumed = 0
        self._received = 0
        self.last_rx = 0.0
        self.pinged = False
        self.started = False  # the worker has sent something (data or keepalive)
        self._sink: TokenSink | None = None

    @property
    def finished(self) -> bool:
        """True after the final chunk was returned (or the stream failed)."""
        return self._finished

    def set_sink(self, sink: TokenSink | None) -> None:
        """Hand outputs that are one token and nothing else to ``sink`` as they arrive.

        Only while the consumer waits in :meth:`next` with nothing queued, so the order of
        outputs is kept; ``sink`` returns False to decline a token, which :meth:`next` then
        returns as usual (as it does every other output). Saves waking the consumer, and the
        layers between, for every token of a stream.
        """
        self._sink = sink

    # called by StreamClient's subscription callback
    def _push(self, data: bytes, now: float) -> None:
        self.last_rx = now
        self.pinged = False
        self.started = True
        w = self._waiter
        sink = self._sink
        if sink is not None and w is not None and not w.done():
            token = wire.plain_token(data, self._received + 1)
            if token is not None and self._take(sink, token):
                self._received += 1
                self._consumed += 1
                if self._consumed * 2 >= self.window:
                    n, self._consumed = self._consumed, 0
                    self._client._control_soon(self, wire.CTL_CREDIT, n)
                return
        self._buf.append(data)
        if w is not None and not w.done():
            w.set_result(None)

    def _take(self, sink: TokenSink, token: int) -> bool:
        try:
            return sink(token)
        except Exception:  # the subscription callback must survive a consumer's bug
            log.exception("token sink of %s failed; its tokens go through next() now", self.inbox)
            self._sink = None
            return False

    def fail(self, exc: BaseException) -> None:
        """End the stream with ``exc`` (raised by the next :meth:`next`)."""
        if self._error is None:
            self._error = exc
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def next(self) -> EngineOutput:
        """The next output chunk; raises on failure."""
        buf = self._buf
        while True:
            while not buf:
                if self._error is not None:
                    self._finish()
                    raise self._error
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            data = buf.popleft()
            kind = data[0]
            if kind == wire.FRAME_DATA:
                break
            if kind == wire.FRAME_REFUSED:
                self._finish()
                raise WorkerRefusedError(data[1:].decode(errors="replace"))
            if kind == wire.FRAME_GONE:
                self._finish()
                raise WorkerLostError(
                    f"worker {self.instance.instance_id} no longer knows this stream "
                    "(messages were lost)"
                )
            # keepalive: nothing to return
        try:
            seq, payload = wire.split_data_frame(data)
            out = decode_output(payload)
        except RuntimeProtocolError as exc:
            self._finish()
            raise WorkerLostError(
                f"worker {self.instance.instance_id} sent garbage: {exc}"
            ) from None
        self._received += 1
        if seq != self._received:
            self._finish()
            raise WorkerLostError(
                f"worker {self.instance.instance_id}: message {self._received} of the stream "
                f"was lost (got {seq})"
            )
        if out.finish_reason is not None:
            self._finish()
            return out
        self._consumed += 1
        if self._consumed * 2 >= self.window:
            n, self._consumed = self._consumed, 0
            await self._client._control(self, wire.CTL_CREDIT, n)
        return out

    async def cancel(self, *, force: bool = False) -> None:
        """Tell the worker to stop and release the inbox.

        Without ``force`` nothing is sent for a stream that already finished; with it the cancel
        goes out anyway (the stream failed on our side but the worker may still be running it).
        """
        if not self._finished or force:
            self._finish()
            await self._client._control(self, wire.CTL_CANCEL)

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._client._streams.pop(self.inbox, None)


class StreamClient:
    """Opens request streams to worker instances over one NATS connection."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        window: int = DEFAULT_WINDOW,
        ping_after: float = 0.3,
        dead_after: float = 5.0,
    ) -> None:
        """Prepare the client; :meth:`start` subscribes."""
        self._nc = nc
        self._window = window
        self._ping_after = ping_after
        self._dead_after = dead_after
        self._prefix = f"_DGD.{secrets.token_hex(8)}"
        self._mux_subject = f"{self._prefix}.{wire.MUX_SUBJECT_TOKEN}"
        self._inbox_head = self._prefix + "."
        self._seq = 0
        self._streams: dict[str, ResponseStream] = {}
        self._sub: Subscription | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._publisher: BatchedPublisher | None = None
        self._bg: set[EagerTask[None]] = set()

    @property
    def inflight(self) -> int:
        """Streams currently open."""
        return len(self._streams)

    async def start(self) -> None:
        """Subscribe to this client's inboxes and start the silence watchdog."""
        self._publisher = BatchedPublisher(self._nc)
        self._sub = await subscribe_direct(self._nc, f"{self._prefix}.*", self._on_frame)
        self._watchdog = asyncio.create_task(self._watchdog_loop(), name="dgd-stream-watchdog")

    async def close(self) -> None:
        """Fail open streams and unsubscribe."""
        for st in list(self._streams.values()):
            st.fail(WorkerLostError("client closed"))
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def open(self, instance: WorkerInstance, request: PreprocessedRequest) -> ResponseStream:
        """Send ``request`` to ``instance``; outputs arrive on the returned stream."""
        self._seq += 1
        inbox = f"{self._prefix}.{self._seq}"
        st = ResponseStream(self, inbox, instance, self._window)
        st.last_rx = asyncio.get_running_loop().time()
        self._streams[inbox] = st
        mux = self._mux_subject if wire.FEATURE_MUX in instance.features else None
        payload = wire.encode_request_envelope(request, self._window, mux)
        if len(payload) > self._nc.max_payload:
            st._finish()
            raise RequestTooLargeError(
                f"request {request.request_id!r} is {len(payload)} bytes encoded, over the NATS "
                f"server's max_payload ({self._nc.max_payload}); raise max_payload in nats-server"
            )
        try:
            await self._nc.publish(instance.subject, payload, reply=inbox)
        except Exception as exc:
            st._finish()
            raise WorkerUnreachableError(f"cannot send to {instance.instance_id}: {exc}") from exc
        flush_now(self._nc)  # a new request is on the time-to-first-token path
        return st

    def fail_instance(self, instance_id: str, reason: str) -> None:
        """Fail every open stream served by ``instance_id``."""
        for st in list(self._streams.values()):
            if st.instance.instance_id == instance_id:
                st.fail(self._lost(st, reason))

    def _lost(self, st: ResponseStream, reason: str) -> Exception:
        if not st.started:
            return WorkerUnreachableError(f"worker {st.instance.instance_id}: {reason}")
        return WorkerLostError(f"worker {st.instance.instance_id} lost mid-stream: {reason}")

    async def _control(self, st: ResponseStream, kind: int, amount: int = 0) -> None:
        body = wire.encode_control(kind, st.inbox, amount)
        publisher = self._publisher
        if publisher is not None and publisher.publish(st.control_subject, body, st.inbox):
            return
        await self._publish_quietly(st.control_subject, body, st.inbox)

    def _control_soon(self, st: ResponseStream, kind: int, amount: int = 0) -> None:
        """:meth:`_control` from a callback: sent now, or by a task when nats-py must queue it."""
        body = wire.encode_control(kind, st.inbox, amount)
        publisher = self._publisher
        if publisher is not None and publisher.publish(st.control_subject, body, st.inbox):
            return
        task = EagerTask(self._publish_quietly(st.control_subject, body, st.inbox))
        task.start()
        if not task.done():
            self._bg.add(task)
            task.add_done_callback(self._bg.discard)

    async def _publish_quietly(self, subject: str, body: bytes, reply: str) -> None:
        with contextlib.suppress(Exception):
            await self._nc.publish(subject, body, reply=reply)

    def _on_frame(self, msg: InboundMsg) -> None:
        st = self._streams.get(msg.subject)
        if st is None:
            if msg.subject == self._mux_subject:
                self._on_batch(msg.data)
            return
        headers = msg.headers
        if headers is not None and headers.get("Status") == "503":
            st.fail(self._lost(st, "no responders (worker process gone)"))
            return
        st._push(msg.data, asyncio.get_running_loop().time())

    def _on_batch(self, payload: bytes) -> None:
        """Frames of several streams batched by a worker (wire: batched frames)."""
        try:
            entries = wire.split_mux(payload)
        except RuntimeProtocolError as exc:
            log.warning("dropping a malformed batch of frames: %s", exc)
            return
        streams, head = self._streams, self._inbox_head
        now = asyncio.get_running_loop().time()
        for token, frame in entries:
            st = streams.get(head + token.decode())
            if st is not None:
                st._push(frame, now)

    async def _watchdog_loop(self) -> None:
        loop = asyncio.get_running_loop()
        tick = min(0.1, self._ping_after / 2)
        while True:
            await asyncio.sleep(tick)
            if not self._nc.is_connected:
                continue
            now = loop.time()
            for st in list(self._streams.values()):
                silent = now - st.last_rx
                if silent >= self._ping_after + self._dead_after:
                    st.fail(self._lost(st, f"silent for {silent:.1f}s"))
                elif silent >= self._ping_after and not st.pinged:
                    st.pinged = True
                    await self._control(st, wire.CTL_PING)
