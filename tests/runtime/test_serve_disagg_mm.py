"""`dgd serve` of a disaggregated graph really disaggregates; of a multimodal graph, encodes."""

from __future__ import annotations

import base64
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from tests.fixtures.catalog import graph_path

from dgd_runtime.local.nats_server import free_port

pytestmark = pytest.mark.runtime

HANG_GUARD = 90.0


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress((b"\x00" + b"\x10\x20\x30" * width) * height)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@contextmanager
def served(graph: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Run ``dgd serve GRAPH``; yields (base URL, the "is up" line); stops it by PID."""
    port = free_port()
    env = {**os.environ, "DGD_CACHE": str(tmp_path / "cache")}
    stderr_path = tmp_path / "serve.stderr"
    with (
        open(stderr_path, "w") as stderr,
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dgd_operator",
                "serve",
                str(graph),
                "--port",
                str(port),
                "--speedup-ratio",
                "100",
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            text=True,
        ) as proc,  # fmt: skip
    ):
        try:
            assert proc.stdout is not None
            lines: list[str] = []
            deadline = time.monotonic() + HANG_GUARD
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
                if line.startswith("curl "):
                    break
            up = next((x for x in lines if " is up: " in x), None)
            assert up is not None, "".join(lines) + stderr_path.read_text()
            yield f"http://127.0.0.1:{port}", up
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    assert proc.returncode == 0, stderr_path.read_text()


def _model(url: str) -> str:
    return str(httpx.get(url + "/v1/models", timeout=10).json()["data"][0]["id"])


def test_serve_disagg_graph_disaggregates(tmp_path: Path) -> None:
    with served(graph_path("trtllm-disagg"), tmp_path) as (url, up):
        assert "prefill 1 → decode 1 (disaggregated)" in up
        resp = httpx.post(
            url + "/v1/chat/completions",
            timeout=30,
            json={
                "model": _model(url),
                "messages": [{"role": "user", "content": "Hello there!"}],
                "max_tokens": 8,
                "ignore_eos": True,
            },
        )
        assert resp.status_code == 200, resp.text
        usage = resp.json()["usage"]
        # Only a decode worker that received the prefill's KV reports the whole prompt cached.
        assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"]
        metrics = httpx.get(url + "/metrics", timeout=10).text
        assert 'mode="disaggregated"} 1' in metrics


def test_serve_multimodal_graph_encodes_images(tmp_path: Path) -> None:
    with served(graph_path("multimodal"), tmp_path) as (url, up):
        assert "encode 1" in up
        image = "data:image/png;base64," + base64.b64encode(_png(56, 56)).decode()
        resp = httpx.post(
            url + "/v1/chat/completions",
            timeout=30,
            json={
                "model": _model(url),
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "Describe"},
                            {"type": "image_url", "image_url": {"url": image}},
                        ],
                    }
                ],
                "max_tokens": 8,
                "ignore_eos": True,
            },
        )
        assert resp.status_code == 200, resp.text
        assert 'dynamo_frontend_media_items_total{model="' in httpx.get(url + "/metrics").text
