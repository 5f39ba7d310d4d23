"""Worker side of the request plane: serve an engine's streams over NATS.

One subscription on the instance's request subject, one on its control subject. Each request
becomes a task that pulls from the engine only while the client has granted credits, so a slow
client pushes back into the engine instead of piling up messages in the worker. Idle streams
(waiting for the engine or for credits) get a keepalive every ``keepalive_interval``; those
keepalives are published with ``reply`` = the control subject, so if the client is gone the
server answers "no responders" there and the stream is cancelled at once. When the engine dies
(stops being ready), a request that has sent nothing yet is refused, so the client runs it on
another worker, and a stream in progress ends with an ``engine died`` error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription

from dgd_runtime.aio import EagerTask
from dgd_runtime.engines.base import Engine
from dgd_runtime.protocol import (
    FINISH_ERROR,
    EngineOutput,
    PreprocessedRequest,
    RuntimeProtocolError,
    encode_output,
)
from dgd_runtime.transport import wire
from dgd_runtime.transport.fastsub import (
    BatchedPublisher,
    InboundMsg,
    confirm_sent,
    flush_now,
    subscribe_direct,
)
from dgd_runtime.transport.subjects import control_subject

log = logging.getLogger(__name__)

ENGINE_DIED = "engine died"
"""How errors caused by the engine's death begin (refusals and error outputs alike)."""


@dataclass(slots=True)
class _ServerStream:
    inbox: str
    request: PreprocessedRequest
    credits: int
    sent: int = 0
    sent_at_last_tick: int = 0
    task: EagerTask[None] | None = None
    credit_waiter: asyncio.Future[None] | None = None
    cancelled: bool = False
    mux: str | None = None  # the client's mux subject (batched frames), if it takes them
    mux_token: bytes = b""  # this stream's inbox token in batched frames


@dataclass(slots=True, frozen=True)
class StreamRecord:
    """How one request went, as the worker saw it (for latency metrics)."""

    duration_s: float
    time_to_first_token_s: float | None
    tokens: int
    finish_reason: str


StreamObserver = Callable[[StreamRecord], None]


@dataclass(slots=True)
class ServerCounters:
    """Cumulative request-plane counters of one endpoint server (for /metrics)."""

    requests_total: int = 0
    requests_refused: int = 0
    cancellations_total: int = 0
    client_gone_total: int = 0
    errors_total: int = 0
    messages_sent: int = 0
    """Frames sent (a batch of frames counts each of them)."""
    bytes_sent: int = 0
    batches_sent: int = 0
    """Batched-frames messages sent on clients' mux subjects."""


class EndpointServer:
    """Serves ``engine`` on ``request_subject`` with credit flow control and keepalives."""

    def __init__(
        self,
        nc: NatsClient,
        request_subject: str,
        engine: Engine,
        *,
        keepalive_interval: float = 0.5,
        max_window: int = 1024,
    ) -> None:
        """Prepare the server; :meth:`start` subscribes."""
        self._nc = nc
        self.request_subject = request_subject
        self.control_subject = control_subject(request_subject)
        self._engine = engine
        self._keepalive_interval = keepalive_interval
        self._max_window = max_window
        self._streams: dict[str, _ServerStream] = {}
        self._subs: list[Subscription] = []
        self._request_sub: Subscription | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._accepting = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.counters = ServerCounters()
        self.observer: StreamObserver | None = None
        """Called once per finished stream (on the event loop; keep it cheap)."""
        self._bg: set[asyncio.Task[Any]] = set()
        self._publisher: BatchedPublisher | None = None
        self._bg_eager: set[EagerTask[None]] = set()
        self._mux_out: dict[str, list[bytes]] = {}  # mux subject -> entries of this iteration
        self._mux_flush_scheduled = False

    FEATURES: Final = (wire.FEATURE_MUX,)
    """What to list in the discovery record of an instance this server serves."""

    @property
    def inflight(self) -> int:
        """Number of streams in progress."""
        return len(self._streams)

    async def start(self) -> None:
        """Subscribe to the request and control subjects and start keepalives."""
        self._accepting = True
        self._publisher = BatchedPublisher(self._nc)
        self._subs.append(await subscribe_direct(self._nc, self.control_subject, self._on_control))
        self._request_sub = await subscribe_direct(self._nc, self.request_subject, self._on_request)
        await confirm_sent(self._nc)
        self._keepalive_task = asyncio.create_task(self._keepalive_loop(), name="dgd-keepalive")

    async def stop_accepting(self) -> None:
        """Stop taking new requests (unsubscribe the request subject); streams continue."""
        self._accepting = False
        req_sub, self._request_sub = self._request_sub, None
        if req_sub is not None:
            with contextlib.suppress(Exception):
                await req_sub.unsubscribe()

    async def drain(self, timeout: float) -> None:
        """Stop accepting, let in-flight streams finish for ``timeout`` s, cancel the rest."""
        await self.stop_accepting()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        for st in list(self._streams.values()):
            if st.task is not None:
                st.task.cancel()
        for task in [st.task for st in self._streams.values() if st.task is not None]:
            await task.wait()

    async def close(self) -> None:
        """Cancel everything and unsubscribe."""
        await self.drain(0)
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive_task
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    # ------------------------------------------------------------------ handlers

    def _on_request(self, msg: InboundMsg) -> None:
        inbox = msg.reply
        if not inbox:
            return
        if not self._accepting:
            self._spawn(self._send(inbox, b"Rdraining"))
            self.counters.requests_refused += 1
            return
        try:
            window, request, mux = wire.decode_request_envelope(msg.data)
        except (RuntimeProtocolError, TypeError, ValueError) as exc:
            self.counters.errors_total += 1
            out = EngineOutput([], FINISH_ERROR, f"bad request: {exc}")
            self._spawn(self._send(inbox, wire.data_frame(1, encode_output(out))))
            return
        st = _ServerStream(inbox, request, min(window, self._max_window))
        if mux is not None:
            prefix, _, token = inbox.rpartition(".")
            if prefix == mux.rpartition(".")[0] and 0 < len(token) < 256:
                st.mux, st.mux_token = mux, token.encode()
        self._streams[inbox] = st
        self._idle.clear()
        self.counters.requests_total += 1
        # Started eagerly: the request reaches the engine's queue from this callback, in time
        # for its next step, instead of one loop iteration later (dgd_runtime.aio).
        task = st.task = EagerTask(self._run_stream(st))
        task.start()

    def _on_control(self, msg: InboundMsg) -> None:
        headers = msg.headers
        if headers and headers.get("Status") == "503":
            # Our keepalive found no subscriber on the client's inbox: the client is gone.
            st = self._streams.get(headers.get("Nats-Subject", ""))
            if st is not None:
                self.counters.client_gone_total += 1
                self._cancel(st)
            return
        try:
            kind, inbox, amount = wire.decode_control(msg.data)
        except (RuntimeProtocolError, ValueError, UnicodeDecodeError):
            return
        st = self._streams.get(inbox)
        if kind == wire.CTL_CREDIT:
            if st is not None:
                st.credits += amount
                waiter = st.credit_waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
        elif kind == wire.CTL_CANCEL:
            if st is not None:
                self.counters.cancellations_total += 1
                self._cancel(st)
        elif kind == wire.CTL_PING:
            # A stream we do not know (finished, or its request was lost) must not look alive.
            self._spawn(self._send(inbox, wire.KEEPALIVE if st is not None else wire.GONE))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def _cancel(self, st: _ServerStream) -> None:
        st.cancelled = True
        if st.task is not None and not st.task.done():
            st.task.cancel()

    # ------------------------------------------------------------------ streaming

    async def _run_stream(self, st: _ServerStream) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        first_token_at: float | None = None
        tokens = 0
        reason = "cancelled"
        agen: AsyncIterator[EngineOutput] = self._engine.generate(st.request)
        finished = False
        try:
            while True:
                while st.credits <= 0:
                    st.credit_waiter = loop.create_future()
                    try:
                        await st.credit_waiter
                    finally:
                        st.credit_waiter = None
                try:
                    out = await agen.__anext__()
                except StopAsyncIteration:
                    # An engine that ends without a finish_reason: close the stream properly.
                    out = EngineOutput(
                        [], FINISH_ERROR, "engine ended the stream without finishing"
                    )
                if out.finish_reason is not None and out.finish_reason == FINISH_ERROR:
                    marked = await self._engine_error(st, out)
                    if marked is None:  # refused: the client runs the request elsewhere
                        finished = True
                        reason = FINISH_ERROR
                        break
                    out = marked
                st.credits -= 1
                st.sent += 1
                if out.token_ids:
                    if first_token_at is None:
                        first_token_at = loop.time()
                    tokens += len(out.token_ids)
                if not await self._send_frame(st, wire.data_frame(st.sent, encode_output(out))):
                    break
                if st.sent == 1:  # the first output is on the time-to-first-token path
                    if st.mux is not None:
                        self._flush_mux()
                    flush_now(self._nc)
                if out.finish_reason is not None:
                    finished = True
                    reason = out.finish_reason
                    break
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # the engine failed: tell the client, keep serving others
            log.exception("request %s failed", st.request.request_id)
            self.counters.errors_total += 1
            out = EngineOutput([], FINISH_ERROR, f"{type(exc).__name__}: {exc}")
            st.sent += 1
            await self._send_frame(st, wire.data_frame(st.sent, encode_output(out)))
            finished = True
            reason = FINISH_ERROR
        finally:
            if not finished:
                await self._abort(agen, st.request.request_id)
            else:
                with contextlib.suppress(Exception):
                    await _aclose(agen)
            self._streams.pop(st.inbox, None)
            if not self._streams:
                self._idle.set()
            observer = self.observer
            if observer is not None:
                end = loop.time()
                ttft = None if first_token_at is None else first_token_at - started
                try:
                    observer(StreamRecord(end - started, ttft, tokens, reason))
                except Exception:
                    log.exception("stream observer failed")

    async def _engine_error(self, st: _ServerStream, out: EngineOutput) -> EngineOutput | None:
        """An error output, told apart when the engine died (is no longer ready).

        A request that has sent nothing yet is then refused (None; the refusal is sent
        here), so the client runs it on another worker; a stream in progress ends with
        the error marked as the engine's death.
        """
        if self._engine.ready:
            return out
        message = f"{ENGINE_DIED}: {out.error or 'the engine stopped'}"
        if st.sent == 0:
            st.cancelled = True  # ended here: fail_streams leaves it alone
            self.counters.requests_refused += 1
            await self._send(st.inbox, b"R" + message.encode())
            return None
        return EngineOutput(out.token_ids, FINISH_ERROR, message, out.cached_tokens)

    async def fail_streams(self, message: str) -> None:
        """End every stream in progress now (its engine died and will not end them).

        Call after :meth:`stop_accepting`. A stream that has sent nothing is refused, so its
        client runs the request on another worker; the others end with an error output
        saying ``message``.
        """
        streams = [st for st in self._streams.values() if not st.cancelled]
        for st in streams:
            st.cancelled = True
            if st.task is not None:
                st.task.cancel()
        for st in streams:
            if st.sent == 0:
                self.counters.requests_refused += 1
                await self._send(st.inbox, b"R" + message.encode())
            else:
                self.counters.errors_total += 1
                st.sent += 1
                out = EngineOutput([], FINISH_ERROR, message)
                await self._send_frame(st, wire.data_frame(st.sent, encode_output(out)))
        for task in [st.task for st in streams if st.task is not None]:
            await task.wait()

    async def _abort(self, agen: AsyncIterator[EngineOutput], request_id: str) -> None:
        with contextlib.suppress(Exception):
            await _aclose(agen)
        with contextlib.suppress(Exception):
            await self._engine.abort(request_id)

    async def _send_frame(self, st: _ServerStream, frame: bytes) -> bool:
        """Send a data frame: batched on the client's mux subject, else to the inbox."""
        mux = st.mux
        if mux is None:
            return await self._send(st.inbox, frame)
        if len(frame) > self._nc.max_payload // 2:
            # Too large to share a message: on its own, after what is queued for this client.
            self._flush_mux()
            return await self._send(st.inbox, frame)
        out = self._mux_out.get(mux)
        if out is None:
            out = self._mux_out[mux] = []
        out.append(wire.mux_entry(st.mux_token, frame))
        self.counters.messages_sent += 1
        self.counters.bytes_sent += len(frame)
        if not self._mux_flush_scheduled:
            self._mux_flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_mux)
        return True

    def _flush_mux(self) -> None:
        """Publish every client's batched frames (one message per client, within max_payload)."""
        self._mux_flush_scheduled = False
        pending, self._mux_out = self._mux_out, {}
        limit = max(self._nc.max_payload - 1024, 1024)
        for subject, entries in pending.items():
            batch: list[bytes] = []
            size = 0
            for entry in entries:
                if batch and size + len(entry) > limit:
                    self._publish_now(subject, b"".join(batch))
                    batch, size = [], 0
                batch.append(entry)
                size += len(entry)
            self._publish_now(subject, b"".join(batch))

    def _publish_now(self, subject: str, payload: bytes) -> None:
        self.counters.batches_sent += 1
        publisher = self._publisher
        if publisher is not None and publisher.publish(subject, payload):
            return
        # Through nats-py (reconnecting, or its buffer backed up). Started eagerly: nats-py
        # queues the command as the coroutine starts, so batches keep their order.
        task = EagerTask(self._publish_quietly(subject, payload))
        task.start()
        if not task.done():
            self._bg_eager.add(task)
            task.add_done_callback(self._bg_eager.discard)

    async def _publish_quietly(self, subject: str, payload: bytes) -> None:
        try:
            await self._nc.publish(subject, payload)
        except Exception as exc:  # closed: the client's silence watchdog takes over
            log.debug("publish to %s failed: %s", subject, exc)

    async def _send(self, inbox: str, frame: bytes, *, probe: bool = False) -> bool:
        reply = self.control_subject if probe else ""
        try:
            publisher = self._publisher
            if publisher is None or not publisher.publish(inbox, frame, reply):
                await self._nc.publish(inbox, frame, reply=reply)
        except Exception as exc:  # disconnected with a full buffer, closed connection...
            log.debug("publish to %s failed: %s", inbox, exc)
            return False
        self.counters.messages_sent += 1
        self.counters.bytes_sent += len(frame)
        return True

    async def _keepalive_loop(self) -> None:
        # A stream that sent nothing during a whole tick gets a keepalive (so the silence a
        # client sees is < 2 intervals); counting frames avoids a clock read per message.
        while True:
            await asyncio.sleep(self._keepalive_interval)
            for st in list(self._streams.values()):
                if st.sent == st.sent_at_last_tick:
                    await self._send(st.inbox, wire.KEEPALIVE, probe=True)
                st.sent_at_last_tick = st.sent


async def _aclose(agen: AsyncIterator[EngineOutput]) -> None:
    aclose = getattr(agen, "aclose", None)
    if aclose is not None:
        await aclose()
