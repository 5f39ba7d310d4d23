"""The frontend's HTTP/OpenAI behaviour over an in-process stand-in backend (FakeBackend).

The end-to-end versions with a real nats-server and worker process are in
tests/runtime/test_frontend.py; these cover protocol details fast.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.fixtures.fake_backend import FakeBackend

from dgd_runtime.frontend.app import RunningFrontend, start_frontend
from dgd_runtime.local.model_dir import build_model_dir
from dgd_runtime.preprocess.tokenizer import load_preprocessor
from dgd_runtime.protocol import ModelCard

pytestmark = pytest.mark.unit

REPLY = "Hello world, the quick brown fox. STOP here and more"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("m") / "tiny", context_length=256)


@pytest.fixture
def backend(model_dir: Path) -> FakeBackend:
    ids = load_preprocessor(str(model_dir)).encode(REPLY)
    return FakeBackend([ModelCard("tiny", str(model_dir), 256, 16)], ids)


@pytest.fixture
async def frontend(backend: FakeBackend) -> AsyncIterator[RunningFrontend]:
    fe = await start_frontend(backend)
    yield fe
    await fe.close()


@pytest.fixture
async def client(frontend: RunningFrontend) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as c:
        yield c


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **extra}


async def sse(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[Any]:
    events: list[Any] = []
    async with client.stream("POST", path, json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/event-stream"
        async for line in resp.aiter_lines():
            if line.startswith("data: "):
                data = line[len("data: ") :]
                events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


async def test_stream_with_usage(client: httpx.AsyncClient, backend: FakeBackend) -> None:
    events = await sse(
        client,
        "/v1/chat/completions",
        chat(stream=True, max_tokens=6, stream_options={"include_usage": True}),
    )
    assert events[-1] == "[DONE]"
    usage = events[-2]["usage"]
    assert events[-2]["choices"] == []
    assert usage["completion_tokens"] == 6
    assert usage["total_tokens"] == usage["prompt_tokens"] + 6
    chunks = events[:-2]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert REPLY.startswith(text) and len(text) > 5
    assert len({c["id"] for c in events[:-1]}) == 1
    # Sampling options reach the engine request.
    assert backend.requests[-1].sampling.max_tokens == 6


async def test_non_stream_and_sampling(client: httpx.AsyncClient, backend: FakeBackend) -> None:
    resp = await client.post(
        "/v1/chat/completions",
        json=chat(
            max_completion_tokens=200,
            temperature=0.3,
            top_p=0.8,
            top_k=5,
            seed=9,
            presence_penalty=0.5,
            frequency_penalty=0.25,
            ignore_eos=True,
        ),
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": REPLY * 0 + body["choices"][0]["message"]["content"],
    }
    s = backend.requests[-1].sampling
    assert (
        s.max_tokens,
        s.temperature,
        s.top_p,
        s.top_k,
        s.seed,
        s.presence_penalty,
        s.frequency_penalty,
        s.ignore_eos,
    ) == (200, 0.3, 0.8, 5, 9, 0.5, 0.25, True)
    assert body["usage"]["completion_tokens"] == 200


async def test_stop_string_across_tokens(client: httpx.AsyncClient) -> None:
    events = await sse(client, "/v1/chat/completions", chat(stream=True, stop=["STOP"]))
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == REPLY[: REPLY.index("STOP")]
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    resp = await client.post(
        "/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 50, "stop": [" fox"]}
    )
    assert resp.json()["choices"][0]["text"] == "Hello world, the quick brown"
    assert resp.json()["choices"][0]["finish_reason"] == "stop"


async def test_completions_stream(client: httpx.AsyncClient) -> None:
    events = await sse(
        client,
        "/v1/completions",
        {"model": "tiny", "prompt": [1, 2, 3], "max_tokens": 4, "stream": True},
    )
    assert events[-1] == "[DONE]"
    assert all(e["object"] == "text_completion" for e in events[:-1])
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == "Hello world"


@pytest.mark.parametrize(
    ("content", "status", "param"),
    [
        (b"{not json", 400, "body"),
        (orjson.dumps(chat(n=3)), 400, "n"),
        (orjson.dumps(chat(max_tokens="many")), 400, "max_tokens"),
        (orjson.dumps({**chat(), "model": "other"}), 404, "model"),
        (
            orjson.dumps(chat(messages=[{"role": "user", "content": "word " * 300}])),
            400,
            "messages",
        ),
        (orjson.dumps(chat(max_tokens=250)), 400, "max_tokens"),
    ],
)
async def test_bad_requests(
    client: httpx.AsyncClient, content: bytes, status: int, param: str
) -> None:
    resp = await client.post(
        "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
    )
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["param"] == param
    assert set(err) == {"message", "type", "param", "code"}


async def test_no_workers_is_503_with_retry_after(
    client: httpx.AsyncClient, backend: FakeBackend
) -> None:
    backend.cards = []
    resp = await client.post("/v1/chat/completions", json=chat())
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "1"
    assert (await client.get("/health")).status_code == 503


async def test_worker_lost_mid_stream_ends_with_error_event(
    client: httpx.AsyncClient, backend: FakeBackend
) -> None:
    backend.fail_after = 3
    async with client.stream("POST", "/v1/chat/completions", json=chat(stream=True)) as resp:
        lines = [line async for line in resp.aiter_lines() if line]
    assert lines[-2] == "event: error"
    assert "worker failed" in orjson.loads(lines[-1][len("data: ") :])["error"]["message"]
    # Before anything was sent the failure is an HTTP error status.
    backend.fail_after = 0
    resp = await client.post("/v1/chat/completions", json=chat())
    assert resp.status_code == 502


async def test_client_disconnect_cancels_the_stream(
    frontend: RunningFrontend, backend: FakeBackend
) -> None:
    backend.delay = 0.01
    reader, writer = await asyncio.open_connection("127.0.0.1", frontend.port)
    body = orjson.dumps(chat(stream=True, max_tokens=200))
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    await writer.drain()
    await reader.readuntil(b"data: ")
    writer.close()
    for _ in range(200):
        if backend.closed:
            break
        await asyncio.sleep(0.01)
    assert backend.closed == [backend.requests[-1].request_id]


async def test_keep_alive_nodelay_and_pipelining(frontend: RunningFrontend) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", frontend.port)
    writer.write(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    first = await reader.readuntil(b'Service is live"}')
    assert first.startswith(b"HTTP/1.1 200 OK")
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    assert orjson.loads(await reader.readexactly(length))["data"][0]["id"] == "tiny"
    conn = next(iter(frontend.server.connections))
    sock = conn._transport.get_extra_info("socket")  # type: ignore[union-attr]
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    writer.close()


async def test_metrics_and_routes(client: httpx.AsyncClient) -> None:
    await client.post("/v1/chat/completions", json=chat(max_tokens=3))
    await client.post("/v1/chat/completions", content=b"[")
    text = (await client.get("/metrics")).text
    for name in (
        "dynamo_frontend_requests_total",
        "dynamo_frontend_inflight_requests",
        "dynamo_frontend_time_to_first_token_seconds_bucket",
        "dynamo_frontend_inter_token_latency_seconds_count",
        "dynamo_frontend_request_duration_seconds_sum",
        "dynamo_frontend_input_sequence_tokens_bucket",
        "dynamo_frontend_output_sequence_tokens_count",
    ):
        assert name in text
    assert (
        'dynamo_frontend_requests_total{model="tiny",endpoint="chat_completions",'
        'request_type="unary",status="success",error_type=""} 1'
    ) in text
    assert (await client.get("/nope")).status_code == 404
    assert (await client.get("/v1/chat/completions")).status_code == 405
    assert (await client.get("/health")).json()["status"] == "healthy"
    assert (await client.get("/v1/models/tiny")).json()["id"] == "tiny"


async def test_multi_token_outputs_become_one_event_per_token(
    client: httpx.AsyncClient, backend: FakeBackend
) -> None:
    backend.tokens_per_output = 4
    n = len(backend.reply_ids)
    events = await sse(
        client,
        "/v1/chat/completions",
        chat(stream=True, max_tokens=n, stream_options={"include_usage": True}),
    )
    chunks = [e for e in events[:-2] if e["choices"][0]["delta"].get("content")]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == REPLY
    assert len(chunks) == n  # every token of this reply decodes to visible text
    # A stop string inside a multi-token output counts tokens only up to the stop.
    body = (await client.post("/v1/chat/completions", json=chat(stop=[" quick"]))).json()
    assert body["choices"][0]["message"]["content"] == "Hello world, the"
    assert body["usage"]["completion_tokens"] == 7  # H el lo " world" , " the" " quick"


async def test_http10_expect_continue_and_chunked_body(frontend: RunningFrontend) -> None:
    body = orjson.dumps(chat(max_tokens=2))
    reader, writer = await asyncio.open_connection("127.0.0.1", frontend.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(body)
    assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
    writer.close()

    reader, writer = await asyncio.open_connection("127.0.0.1", frontend.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    data = await reader.read()  # HTTP/1.0 without keep-alive: the server closes
    assert data.startswith(b"HTTP/1.1 200") and b"Connection: close" in data
    writer.close()

    reader, writer = await asyncio.open_connection("127.0.0.1", frontend.port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    data = await reader.read()
    assert data.startswith(b"HTTP/1.1 411")
    writer.close()


async def test_request_over_the_request_plane_limit_is_400(
    client: httpx.AsyncClient, backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request too big for one NATS message is the client's fault, not a server error."""
    from dgd_runtime.protocol import EngineOutput, RequestTooLargeError

    async def too_large(request: object) -> AsyncIterator[EngineOutput]:
        raise RequestTooLargeError("request 'r1' is 2000000 bytes encoded, over max_payload")
        yield EngineOutput(token_ids=[])  # pragma: no cover - makes this an async generator

    monkeypatch.setattr(backend, "_stream", too_large)
    resp = await client.post("/v1/chat/completions", json=chat())
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "request_too_large"
