"""The frontend end to end: real nats-server, real mock-engine worker processes, real HTTP.

The frontend runs in the test's event loop (RoutedClient backend, exactly what
`python -m dgd_runtime.frontend` wires up) so faults can be injected between requests;
tests/runtime/test_serve.py covers the frontend as its own process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.runtime.support import WorkerProcess, eventually

from dgd_runtime.frontend.app import RunningFrontend, start_frontend
from dgd_runtime.local.nats_server import NatsServer, free_port
from dgd_runtime.protocol import EngineOutput, PreprocessedRequest
from dgd_runtime.router.client import RoutedClient
from dgd_runtime.transport.client import TokenSink

pytestmark = pytest.mark.runtime

MODEL = "dgd-tiny"
NAMESPACE = "fe-test"
# Generous upper bounds that only turn a hang into a failure; nothing asserts speed.
HANG_GUARD = 30.0


@pytest.fixture
def workers(worker_processes: Callable[..., WorkerProcess]) -> Callable[..., WorkerProcess]:
    """Start a mock-engine worker process in the frontend tests' namespace (killed after)."""

    def start(speedup: float = 1000.0) -> WorkerProcess:
        return worker_processes(namespace=NAMESPACE, model_name=MODEL, speedup_ratio=speedup)

    return start


class RecordingBackend:
    """RoutedClient plus a record of which streams the frontend closed early."""

    def __init__(self, client: RoutedClient) -> None:
        self.client = client
        self.closed_early: list[str] = []

    def models(self) -> Any:
        return self.client.models()

    def generate(
        self, request: PreprocessedRequest, *, sink: TokenSink | None = None
    ) -> AsyncIterator[EngineOutput]:
        return self._wrap(request, sink)

    async def _wrap(
        self, request: PreprocessedRequest, sink: TokenSink | None
    ) -> AsyncIterator[EngineOutput]:
        finished = False
        try:
            async for out in self.client.generate(request, sink=sink):
                yield out
                if out.finish_reason is not None:
                    finished = True
        finally:
            if not finished:
                self.closed_early.append(request.request_id)


@pytest.fixture
async def routed(nats_server: NatsServer) -> AsyncIterator[RecordingBackend]:
    client = await RoutedClient.connect(nats_server.url, namespace=NAMESPACE)
    yield RecordingBackend(client)
    await client.close()


@pytest.fixture
async def frontend(routed: RecordingBackend) -> AsyncIterator[RunningFrontend]:
    fe = await start_frontend(routed)
    yield fe
    await fe.close()


@pytest.fixture
async def http(frontend: RunningFrontend) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=frontend.url, timeout=HANG_GUARD) as c:
        yield c


async def wait_models(http: httpx.AsyncClient) -> None:
    """Wait until the frontend lists the model (it has discovered a worker serving it)."""

    async def listed() -> bool:
        data = (await http.get("/v1/models")).json()["data"]
        return [m["id"] for m in data] == [MODEL]

    await eventually(listed, HANG_GUARD, f"the frontend to list {MODEL}", interval=0.1)


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Tell me a story"}], **extra}


async def sse_events(resp: httpx.Response, first_event: asyncio.Event | None = None) -> list[Any]:
    """Every SSE data event of ``resp`` (errors wrapped); sets ``first_event`` on the first."""
    events: list[Any] = []
    pending_error = False
    async for line in resp.aiter_lines():
        if line == "event: error":
            pending_error = True
        elif line.startswith("data: "):
            data = line[6:]
            if data == "[DONE]":
                events.append(data)
            else:
                obj = orjson.loads(data)
                events.append({"error_event": obj} if pending_error else obj)
                pending_error = False
            if first_event is not None:
                first_event.set()
    return events


async def test_streaming_and_non_streaming(
    workers: Callable[..., WorkerProcess], http: httpx.AsyncClient
) -> None:
    workers()
    await wait_models(http)
    assert (await http.get("/health")).json()["status"] == "healthy"

    async with http.stream(
        "POST",
        "/v1/chat/completions",
        json=chat(
            stream=True, max_tokens=20, ignore_eos=True, stream_options={"include_usage": True}
        ),
    ) as resp:
        assert resp.status_code == 200
        events = await sse_events(resp)
    assert events[-1] == "[DONE]"
    usage = events[-2]["usage"]
    assert usage["completion_tokens"] == 20
    assert usage["prompt_tokens"] > 5
    assert events[-3]["choices"][0]["finish_reason"] == "length"
    streamed = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-2])

    resp = await http.post("/v1/chat/completions", json=chat(max_tokens=20, ignore_eos=True))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["usage"]["completion_tokens"] == 20
    assert body["choices"][0]["finish_reason"] == "length"
    assert isinstance(body["choices"][0]["message"]["content"], str)
    assert streamed  # the mock engine produced decodable text

    resp = await http.post(
        "/v1/completions",
        json={"model": MODEL, "prompt": "Once upon", "max_tokens": 8, "ignore_eos": True},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["usage"]["completion_tokens"] == 8


async def test_stop_string_and_usage(
    workers: Callable[..., WorkerProcess], http: httpx.AsyncClient
) -> None:
    workers()
    await wait_models(http)
    full = (
        await http.post("/v1/chat/completions", json=chat(max_tokens=40, ignore_eos=True, seed=1))
    ).json()["choices"][0]["message"]["content"]
    # The mock engine is deterministic for a seed: the same request yields the same text, so a
    # stop string taken from its middle must end the second response right before it.
    text = full.strip()
    assert len(text) >= 6, f"seed 1 no longer yields enough text to cut: {full!r}"
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    body = (
        await http.post(
            "/v1/chat/completions", json=chat(max_tokens=40, ignore_eos=True, seed=1, stop=[stop])
        )
    ).json()
    content = body["choices"][0]["message"]["content"]
    assert stop not in content
    assert body["choices"][0]["finish_reason"] == "stop"
    assert content == full[: full.index(stop)]
    assert body["usage"]["completion_tokens"] < 40


async def test_bad_input(workers: Callable[..., WorkerProcess], http: httpx.AsyncClient) -> None:
    workers()
    await wait_models(http)
    resp = await http.post("/v1/chat/completions", content=b"{oops")
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"
    resp = await http.post("/v1/chat/completions", json=chat(temperature="warm"))
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "temperature"
    resp = await http.post("/v1/chat/completions", json={**chat(), "model": "nope"})
    assert resp.status_code == 404
    resp = await http.post(
        "/v1/chat/completions", json=chat(messages=[{"role": "user", "content": "word " * 5000}])
    )
    assert resp.status_code == 400
    assert "context length" in resp.json()["error"]["message"]


async def test_no_worker_is_503(http: httpx.AsyncClient) -> None:
    resp = await http.post("/v1/chat/completions", json=chat())
    assert resp.status_code == 503
    assert resp.headers["retry-after"]
    assert resp.json()["error"]["code"] == 503


async def test_worker_killed_mid_stream(
    workers: Callable[..., WorkerProcess], http: httpx.AsyncClient, routed: RecordingBackend
) -> None:
    # Two slow workers; round-robin puts one of two concurrent long streams on each.
    first = workers(speedup=1.0)
    workers(speedup=1.0)
    await asyncio.wait_for(routed.client.wait_for_workers(HANG_GUARD, count=2), HANG_GUARD)

    async def long_stream(first_event: asyncio.Event) -> list[Any]:
        async with http.stream(
            "POST", "/v1/chat/completions", json=chat(stream=True, max_tokens=3000, ignore_eos=True)
        ) as resp:
            assert resp.status_code == 200
            return await sse_events(resp, first_event)

    started = [asyncio.Event(), asyncio.Event()]
    streams = [asyncio.create_task(long_stream(event)) for event in started]
    # Kill only once both streams are producing tokens (one on each worker).
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), HANG_GUARD)
    await asyncio.to_thread(first.kill)
    done, pending = await asyncio.wait(
        streams, timeout=HANG_GUARD, return_when=asyncio.FIRST_COMPLETED
    )
    assert done, "the stream of the killed worker hung"
    events = next(iter(done)).result()
    assert "error_event" in events[-1], events[-3:]
    assert "worker" in events[-1]["error_event"]["error"]["message"]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)

    # The next requests go to the live worker.
    for _ in range(3):
        resp = await http.post("/v1/chat/completions", json=chat(max_tokens=5, ignore_eos=True))
        assert resp.status_code == 200, resp.text


async def test_client_disconnect_cancels(
    workers: Callable[..., WorkerProcess], frontend: RunningFrontend, routed: RecordingBackend
) -> None:
    worker = workers(speedup=1.0)
    await asyncio.wait_for(routed.client.wait_for_workers(HANG_GUARD), HANG_GUARD)
    reader, writer = await asyncio.open_connection("127.0.0.1", frontend.port)
    body = orjson.dumps(chat(stream=True, max_tokens=3000, ignore_eos=True))
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    await writer.drain()
    await asyncio.wait_for(reader.readuntil(b'"content"'), HANG_GUARD)
    writer.close()

    async def cancelled_at_worker() -> None:
        async with httpx.AsyncClient(timeout=5) as c:
            while True:
                text = (await c.get(worker.system_url + "/metrics")).text
                for line in text.splitlines():
                    if (
                        line.startswith("dynamo_component_cancellation_total")
                        and float(line.rsplit(" ", 1)[1]) >= 1
                    ):
                        return
                await asyncio.sleep(0.1)

    await asyncio.wait_for(cancelled_at_worker(), HANG_GUARD)
    assert len(routed.closed_early) == 1


async def test_nats_restart_does_not_crash(
    workers: Callable[..., WorkerProcess], http: httpx.AsyncClient, nats_server: NatsServer
) -> None:
    workers()
    await wait_models(http)
    assert (await http.post("/v1/chat/completions", json=chat(max_tokens=3))).status_code == 200
    await asyncio.to_thread(nats_server.restart, 0.5)
    assert (await http.get("/live")).status_code == 200

    async def until_ok() -> None:
        while True:
            resp = await http.post("/v1/chat/completions", json=chat(max_tokens=3, ignore_eos=True))
            if resp.status_code == 200:
                return
            assert resp.status_code in (502, 503), resp.text
            await asyncio.sleep(0.2)

    await asyncio.wait_for(until_ok(), HANG_GUARD)
    text = (await http.get("/metrics")).text
    assert "dynamo_frontend_requests_total" in text


async def test_frontend_process_starts_before_nats(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`python -m dgd_runtime.frontend` serves 503s until NATS and a worker appear."""
    (tmp_path / "nats").mkdir()
    nats = NatsServer(store_dir=str(tmp_path / "nats"))  # port chosen, not started yet
    port = free_port()
    env = {
        **os.environ,
        "NATS_SERVER": nats.url,
        "DYN_NAMESPACE": "fe-proc",
        "DYN_HTTP_PORT": str(port),
    }
    log = open(tmp_path / "frontend.log", "wb")  # noqa: SIM115
    fe = subprocess.Popen(
        [sys.executable, "-m", "dgd_runtime.frontend"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    worker = WorkerProcess(
        nats.url, str(tiny_model_dir), namespace="fe-proc", model_name=MODEL, speedup_ratio=1000.0
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            async def up() -> None:
                while True:
                    try:
                        if (await http.get("/live")).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(up(), HANG_GUARD)
            resp = await http.post("/v1/chat/completions", json=chat())
            assert resp.status_code == 503
            assert (await http.get("/health")).status_code == 503

            nats.start()
            await asyncio.to_thread(worker.start)
            await wait_models(http)
            resp = await http.post("/v1/chat/completions", json=chat(max_tokens=4, ignore_eos=True))
            assert resp.status_code == 200, resp.text
            health = (await http.get("/health")).json()
            assert health["status"] == "healthy"
            assert health["instances"][0]["model"] == MODEL
    finally:
        fe.send_signal(signal.SIGTERM)
        try:
            assert fe.wait(15) == 0
        finally:
            if fe.poll() is None:
                fe.kill()
                fe.wait()
            worker.kill()
            nats.close()
