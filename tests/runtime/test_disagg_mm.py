"""Disaggregated prefill→decode and multimodal (E+PD, E/P/D) through the HTTP frontend.

Real nats-server (with JetStream for the media store), real worker processes (mock engine,
``--disaggregation-mode``), real encode worker processes (``python -m dgd_runtime.encode``),
the frontend in the test's loop over the same :class:`StagedClient` its ``__main__`` wires.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import struct
import sys
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from tests.runtime.support import WorkerProcess, eventually

from dgd_runtime.frontend.app import RunningFrontend, start_frontend
from dgd_runtime.local.nats_server import NatsServer
from dgd_runtime.router.disagg import DISAGGREGATED, LOCAL_PREFILL, StagedClient

pytestmark = pytest.mark.runtime

MODEL = "dgd-tiny"
NAMESPACE = "dmm-test"
HANG_GUARD = 30.0


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid solid-colour PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


RED = png(112, 112, (255, 0, 0))  # 4x4 patches of 28 px: 16 placeholder tokens
BLUE = png(112, 112, (0, 0, 255))


def data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


def image_chat(url: str, text: str = "What is in this picture?", **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": text},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
        "max_tokens": 12,
        "ignore_eos": True,
        "seed": 7,
        **extra,
    }


def chat(**extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me a story about a lighthouse keeper"}],
        "max_tokens": 10,
        "ignore_eos": True,
        **extra,
    }


class EncodeProcess(WorkerProcess):
    """``python -m dgd_runtime.encode`` (same ready line and PID handling as a worker)."""

    def __init__(self, nats_url: str, model_path: str) -> None:
        super().__init__(nats_url, model_path, namespace=NAMESPACE, model_name=MODEL)
        self.args = [
            sys.executable, "-m", "dgd_runtime.encode",
            "--model-path", model_path,
            "--model-name", MODEL,
            "--nats-server", nats_url,
            "--namespace", NAMESPACE,
            "--log-level", "warning",
        ]  # fmt: skip


@pytest.fixture
def start(
    worker_processes: Callable[..., WorkerProcess], nats_server: NatsServer, tiny_model_dir: Path
) -> Iterator[Callable[[str], WorkerProcess]]:
    """Start a worker of a role: ``agg``, ``prefill``, ``decode`` or ``encode``."""
    encoders: list[EncodeProcess] = []

    def run(role: str) -> WorkerProcess:
        if role == "encode":
            proc = EncodeProcess(nats_server.url, str(tiny_model_dir))
            encoders.append(proc)
            return proc.start()
        return worker_processes(
            namespace=NAMESPACE,
            model_name=MODEL,
            speedup_ratio=1000.0,
            extra_args=["--disaggregation-mode", role, "--block-size", "16"],
        )

    yield run
    for proc in encoders:
        proc.kill()


@pytest.fixture
async def staged(nats_server: NatsServer) -> AsyncIterator[StagedClient]:
    holder: list[RunningFrontend] = []

    def record(model: str, mode: str) -> None:
        holder[0].frontend.metrics.disagg_requests.inc(model, mode)

    client = await StagedClient.connect(nats_server.url, namespace=NAMESPACE, record_mode=record)
    client.holder = holder  # type: ignore[attr-defined]
    yield client
    await client.close()


@pytest.fixture
async def http(staged: StagedClient) -> AsyncIterator[httpx.AsyncClient]:
    fe = await start_frontend(staged)
    staged.holder.append(fe)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(base_url=fe.url, timeout=HANG_GUARD) as c:
        yield c
    await fe.close()


async def wait_stages(staged: StagedClient, **expected: int) -> None:
    """Wait until the staged client sees ``backend=``, ``prefill=``, ``encode=`` workers."""

    def seen() -> bool:
        got = {
            "backend": len(staged.backend.instances()),
            "prefill": len(staged.prefill.instances()) if staged.prefill else 0,
            "encode": len(staged.encode.instances()) if staged.encode else 0,
        }
        return all(got[k] == v for k, v in expected.items())

    await eventually(seen, HANG_GUARD, f"workers {expected}", interval=0.05)


async def metric(url: str, name: str) -> float:
    """Sum of the samples of ``name`` (any labels) on a Prometheus endpoint."""
    async with httpx.AsyncClient(timeout=5) as c:
        text = (await c.get(url)).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total


async def frontend_mode_count(http: httpx.AsyncClient, mode: str) -> float:
    text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("dynamo_frontend_disagg_requests_total") and f'mode="{mode}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --------------------------------------------------------------------------- disaggregation


async def test_prefill_workers_serve_and_decode_reports_handed_over_tokens(
    start: Callable[[str], WorkerProcess], staged: StagedClient, http: httpx.AsyncClient
) -> None:
    prefills = [start("prefill"), start("prefill")]
    decode = start("decode")
    await wait_stages(staged, backend=1, prefill=2)
    for i in range(4):
        resp = await http.post(
            "/v1/chat/completions",
            json=chat(seed=i, messages=[{"role": "user", "content": f"story number {i} " * 8}]),
        )
        assert resp.status_code == 200, resp.text
        usage = resp.json()["usage"]
        assert usage["completion_tokens"] == 10
        # The decode worker got the whole prompt's KV from the prefill worker.
        assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"]
    served = [
        await metric(p.system_url + "/metrics", "dynamo_component_requests_total") for p in prefills
    ]
    assert sum(served) == 4, served
    assert await metric(decode.system_url + "/metrics", "dynamo_component_requests_total") == 4
    assert await frontend_mode_count(http, DISAGGREGATED) == 4
    assert await frontend_mode_count(http, LOCAL_PREFILL) == 0

    async def released() -> bool:
        held = [
            await metric(p.system_url + "/metrics", "dynamo_component_disagg_held_transfers")
            for p in prefills
        ]
        return sum(held) == 0

    await eventually(released, HANG_GUARD, "prefill workers to free the handed-over blocks")


async def test_disaggregated_stream_matches_local_prefill(
    start: Callable[[str], WorkerProcess], staged: StagedClient, http: httpx.AsyncClient
) -> None:
    decode = start("decode")
    await wait_stages(staged, backend=1, prefill=0)
    local = await http.post("/v1/chat/completions", json=chat(seed=3))
    assert local.status_code == 200, local.text
    assert await frontend_mode_count(http, LOCAL_PREFILL) == 1
    # Falling back is Dynamo's behaviour: the decode worker prefilled itself.
    assert local.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0

    start("prefill")
    await wait_stages(staged, backend=1, prefill=1)
    disagg = await http.post("/v1/chat/completions", json=chat(seed=3))
    assert disagg.status_code == 200, disagg.text
    assert await frontend_mode_count(http, DISAGGREGATED) == 1
    assert (
        disagg.json()["choices"][0]["message"]["content"]
        == local.json()["choices"][0]["message"]["content"]
    )
    assert await metric(decode.system_url + "/metrics", "dynamo_component_requests_total") == 2


async def test_decode_death_after_hand_off_errors_and_frees_prefill_blocks(
    start: Callable[[str], WorkerProcess], staged: StagedClient, http: httpx.AsyncClient
) -> None:
    prefill = start("prefill")
    decode = start("decode")
    await wait_stages(staged, backend=1, prefill=1)
    assert decode.pid is not None
    os.kill(decode.pid, signal.SIGSTOP)  # registered, but never picks the blocks up
    try:
        request = asyncio.create_task(http.post("/v1/chat/completions", json=chat()))

        async def handed_off() -> bool:
            url = prefill.system_url + "/metrics"
            return await metric(url, "dynamo_component_disagg_held_transfers") == 1

        await eventually(handed_off, HANG_GUARD, "the prefill to hold the hand-off")
        decode.kill()
        resp = await asyncio.wait_for(request, HANG_GUARD)
    finally:
        decode.kill()
    assert resp.status_code in (502, 503), resp.text

    async def freed() -> bool:
        url = prefill.system_url + "/metrics"
        return await metric(url, "dynamo_component_disagg_held_transfers") == 0

    await eventually(freed, HANG_GUARD, "the prefill worker to free the held blocks")


# --------------------------------------------------------------------------- multimodal


@pytest.fixture
async def image_server() -> AsyncIterator[str]:
    """An HTTP server on 127.0.0.1 serving /red.png, /blue.png and /missing.png (404)."""

    async def serve(request: web.Request) -> web.Response:
        images = {"red.png": RED, "blue.png": BLUE}
        body = images.get(request.match_info["name"])
        if body is None:
            return web.Response(status=404)
        return web.Response(body=body, content_type="image/png")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_e_pd_images_through_http(
    start: Callable[[str], WorkerProcess],
    staged: StagedClient,
    http: httpx.AsyncClient,
    image_server: str,
) -> None:
    start("encode")
    start("agg")
    await wait_stages(staged, backend=1, encode=1)

    async def ask(url: str) -> dict[str, Any]:
        resp = await http.post("/v1/chat/completions", json=image_chat(url))
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    red_inline = await ask(data_url(RED))
    red_fetched = await ask(image_server + "/red.png")
    blue = await ask(data_url(BLUE))
    text = lambda b: b["choices"][0]["message"]["content"]  # noqa: E731
    cached = lambda b: b["usage"]["prompt_tokens_details"]["cached_tokens"]  # noqa: E731
    # 16 placeholder tokens per 112x112 image, plus the text.
    assert red_inline["usage"]["prompt_tokens"] > 16
    # Same image (inline or fetched): same embeddings, same output, and a prefix-cache hit.
    assert text(red_fetched) == text(red_inline)
    assert cached(red_inline) == 0
    assert cached(red_fetched) > 0
    # Same text, another image: another output and no shared KV blocks.
    assert text(blue) != text(red_inline)
    assert cached(blue) == 0


async def test_e_p_d_image_is_disaggregated(
    start: Callable[[str], WorkerProcess], staged: StagedClient, http: httpx.AsyncClient
) -> None:
    start("encode")
    start("prefill")
    start("decode")
    await wait_stages(staged, backend=1, prefill=1, encode=1)
    red = await http.post("/v1/chat/completions", json=image_chat(data_url(RED)))
    blue = await http.post("/v1/chat/completions", json=image_chat(data_url(BLUE)))
    assert red.status_code == 200, red.text
    assert blue.status_code == 200, blue.text
    assert await frontend_mode_count(http, DISAGGREGATED) == 2
    usage = red.json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"]
    assert (
        red.json()["choices"][0]["message"]["content"]
        != blue.json()["choices"][0]["message"]["content"]
    )


async def test_bad_media_is_a_400_naming_the_part(
    start: Callable[[str], WorkerProcess],
    staged: StagedClient,
    http: httpx.AsyncClient,
    image_server: str,
) -> None:
    start("agg")
    await wait_stages(staged, backend=1)
    cases = [
        (image_chat(data_url(b"this is not an image")), "messages[0].content[1].image_url"),
        (image_chat(image_server + "/missing.png"), "messages[0].content[1].image_url"),
        (
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": [{"type": "file", "file": {}}]}],
            },
            "messages[0].content[0]",
        ),
    ]
    for body, param in cases:
        resp = await http.post("/v1/chat/completions", json=body)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["param"] == param, resp.text
