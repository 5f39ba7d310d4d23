"""An engine that cannot use a media item: the client gets a 400 naming the content part.

The frontend checks only an image's header; an image whose header is sound but whose data
is corrupt is found out by the engine's decoder, which ends the request before any token
with an output naming the item by its index in the request's media.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.fixtures.fake_backend import FakeBackend

from dgd_runtime.frontend.app import start_frontend
from dgd_runtime.local.model_dir import build_model_dir
from dgd_runtime.protocol import (
    FINISH_ERROR,
    EngineOutput,
    ModelCard,
    PreprocessedRequest,
    decode_output,
    encode_output,
)
from dgd_runtime.transport.client import TokenSink

pytestmark = pytest.mark.unit


def _png_header(width: int = 56, height: int = 56) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )


def _image_part(data: bytes) -> dict[str, Any]:
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    return {"type": "image_url", "image_url": {"url": url}}


class _RefusingBackend(FakeBackend):
    """Ends every request with media as an engine whose decoder refused item ``bad``."""

    def __init__(self, cards: Sequence[ModelCard], bad: int) -> None:
        super().__init__(cards, [5, 6, 7])
        self.bad = bad

    def generate(
        self, request: PreprocessedRequest, *, sink: TokenSink | None = None
    ) -> AsyncIterator[EngineOutput]:
        if not request.mm:
            return super().generate(request, sink=sink)
        self.requests.append(request)
        return self._refuse()

    async def _refuse(self) -> AsyncIterator[EngineOutput]:
        yield EngineOutput(
            [], FINISH_ERROR, "cannot decode image: truncated data", media_index=self.bad
        )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("m") / "tiny", context_length=512)


@pytest.mark.parametrize("stream", [False, True])
async def test_an_image_the_engine_cannot_decode_is_a_400_naming_its_part(
    model_dir: Path, stream: bool
) -> None:
    card = ModelCard("tiny", str(model_dir), 512, 16, extra={"media_kinds": ["image"]})
    backend = _RefusingBackend([card], bad=1)
    frontend = await start_frontend(backend)
    body = {
        "model": "tiny",
        "max_tokens": 4,
        "stream": stream,
        "messages": [
            {
                "role": "user",
                "content": [_image_part(_png_header()), {"type": "text", "text": "a"}],
            },
            {
                "role": "user",
                "content": [{"type": "text", "text": "b"}, _image_part(_png_header())],
            },
        ],
    }
    try:
        async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as http:
            resp = await http.post("/v1/chat/completions", json=body)
            assert resp.status_code == 400, resp.text
            error = resp.json()["error"]
            # Item 1 of the request's media is the second message's second part.
            assert error["param"] == "messages[1].content[1].image_url"
            assert error["code"] == "invalid_media"
            assert "cannot decode image" in error["message"]
            # Not retried elsewhere: the bytes are the client's, any worker would refuse them.
            assert len(backend.requests) == 1
            text = await http.post(
                "/v1/chat/completions",
                json={
                    "model": "tiny",
                    "max_tokens": 2,
                    "messages": [{"role": "user", "content": "x"}],
                },
            )
            assert text.status_code == 200, text.text
    finally:
        await frontend.close()


@pytest.mark.parametrize(
    ("out", "fields"),
    [
        (EngineOutput([], FINISH_ERROR, "cannot decode image", media_index=0), 6),
        (EngineOutput([], FINISH_ERROR, "cannot decode image", 3, None, 2), 6),
        (EngineOutput([], FINISH_ERROR, "engine error"), 4),
        (EngineOutput([1], None), 1),
    ],
)
def test_the_media_index_crosses_the_wire_only_when_set(out: EngineOutput, fields: int) -> None:
    assert decode_output(encode_output(out)) == out
    # Outputs without it keep their short forms (the hot path pays nothing for it).
    assert len(orjson.loads(encode_output(out))) == fields
