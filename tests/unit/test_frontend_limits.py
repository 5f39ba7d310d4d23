"""The frontend's HTTP request limits: oversized requests get 413/431 answers, never a reset."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tests.fixtures.fake_backend import FakeBackend

from dgd_runtime.frontend.__main__ import parse_args
from dgd_runtime.frontend.app import RunningFrontend, start_frontend
from dgd_runtime.frontend.http import HttpLimits
from dgd_runtime.local.model_dir import build_model_dir
from dgd_runtime.protocol import ModelCard

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("m") / "tiny", context_length=256)


@pytest.fixture
async def frontend(model_dir: Path) -> AsyncIterator[RunningFrontend]:
    fe = await start_frontend(FakeBackend([ModelCard("tiny", str(model_dir), 256, 16)], [1, 2]))
    yield fe
    await fe.close()


async def test_ten_megabyte_body_is_answered_413(frontend: RunningFrontend) -> None:
    body = b'{"model": "tiny", "pad": "' + b"x" * (10 * 1000 * 1000) + b'"}'
    async with httpx.AsyncClient(base_url=frontend.url, timeout=30) as client:
        resp = await client.post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
        assert resp.status_code == 413
        assert "exceeds 8388608" in resp.json()["error"]["message"]
        # The next connection is served normally.
        assert (await client.get("/v1/models")).status_code == 200


async def test_five_thousand_headers_are_answered_431(frontend: RunningFrontend) -> None:
    headers = {f"x-h{i}": "v" for i in range(5000)}
    async with httpx.AsyncClient(base_url=frontend.url, timeout=30) as client:
        resp = await client.get("/v1/models", headers=headers)
        assert resp.status_code == 431
        assert "more than 100 request header fields" in resp.json()["error"]["message"]


async def test_header_block_over_its_byte_limit_is_answered_431(
    frontend: RunningFrontend,
) -> None:
    async with httpx.AsyncClient(base_url=frontend.url, timeout=30) as client:
        resp = await client.get("/v1/models", headers={"x-big": "v" * (70 * 1024)})
        assert resp.status_code == 431


async def test_limits_are_configurable(model_dir: Path) -> None:
    backend = FakeBackend([ModelCard("tiny", str(model_dir), 256, 16)], [1, 2])
    limits = HttpLimits(max_body_bytes=100, max_header_bytes=4096, max_headers=10)
    fe = await start_frontend(backend, limits=limits)
    try:
        async with httpx.AsyncClient(base_url=fe.url, timeout=10) as client:
            ok = b"{" + b" " * 98 + b"}"  # exactly the limit: parsed (and refused as JSON)
            assert (await client.post("/v1/completions", content=ok)).status_code == 400
            too_big = await client.post("/v1/completions", content=ok + b" ")
            assert too_big.status_code == 413
            few = {f"x-{i}": "v" for i in range(3)}  # plus httpx's own few headers
            assert (await client.get("/v1/models", headers=few)).status_code == 200
            many = {f"x-{i}": "v" for i in range(11)}
            assert (await client.get("/v1/models", headers=many)).status_code == 431
    finally:
        await fe.close()


async def test_refused_request_is_answered_while_the_client_still_sends(
    frontend: RunningFrontend,
) -> None:
    """A client that announces a huge body and keeps writing reads 413, not a reset."""
    host, port = frontend.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\n")
    for _ in range(64):
        writer.write(b"x" * 65536)
        await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 413 Payload Too Large\r\n")
    writer.close()


def test_limits_come_from_flags_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_args([]).http_max_body_bytes == HttpLimits().max_body_bytes
    monkeypatch.setenv("DGD_HTTP_MAX_BODY_BYTES", "1024")
    monkeypatch.setenv("DGD_HTTP_MAX_HEADERS", "7")
    args = parse_args(["--http-max-header-bytes", "2048"])
    assert (args.http_max_body_bytes, args.http_max_header_bytes, args.http_max_headers) == (
        1024,
        2048,
        7,
    )
    with pytest.raises(SystemExit):
        parse_args(["--http-max-headers", "0"])
