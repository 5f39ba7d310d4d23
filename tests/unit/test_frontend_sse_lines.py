"""Generated text with line breaks that JSON leaves raw still arrives one SSE event per line.

NEL (U+0085), LINE SEPARATOR (U+2028) and PARAGRAPH SEPARATOR (U+2029) are legal unescaped in
JSON, and a byte-level vocabulary assembles them from single-byte tokens; readers that split an
event stream the way `str.splitlines` does (httpx's `aiter_lines`) cut an event at each of them.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest
from tests.fixtures.fake_backend import FakeBackend
from tokenizers import Tokenizer

from dgd_runtime.frontend.app import start_frontend
from dgd_runtime.frontend.service import sse_json
from dgd_runtime.local.model_dir import build_model_dir
from dgd_runtime.protocol import ModelCard

pytestmark = pytest.mark.unit

TEXT = "one\u2028two\x85three\u2029four “quoted”"


@pytest.mark.parametrize("text", [TEXT, "\u2028", "\x85\x85", "plain", "é\u2029"])
def test_sse_json_leaves_no_line_break_and_decodes_to_the_same_text(text: str) -> None:
    data = sse_json({"content": text})
    assert len(data.decode().splitlines()) == 1
    assert orjson.loads(data) == {"content": text}


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "completions"])
async def test_streamed_text_with_raw_line_breaks_arrives_one_event_per_line(
    tmp_path: Path, chat: bool
) -> None:
    model_dir = build_model_dir(tmp_path / "tiny", context_length=512)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids = tokenizer.encode(TEXT, add_special_tokens=False).ids
    assert tokenizer.decode(ids) == TEXT  # the breaks come from single-byte tokens
    card = ModelCard("tiny", str(model_dir), 512, 16)
    frontend = await start_frontend(FakeBackend([card], ids))
    path, body = (
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
        if chat
        else ("/v1/completions", {"prompt": "hi"})
    )
    body |= {"model": "tiny", "max_tokens": len(ids), "stream": True, "ignore_eos": True}
    try:
        async with (
            httpx.AsyncClient(base_url=frontend.url, timeout=10) as http,
            http.stream("POST", path, json=body) as resp,
        ):
            assert resp.status_code == 200
            events = [line async for line in resp.aiter_lines() if line.startswith("data: ")]
    finally:
        await frontend.close()
    assert events[-1] == "data: [DONE]"
    chunks = [orjson.loads(line.removeprefix("data: ")) for line in events[:-1]]
    pieces = [c["choices"][0]["delta" if chat else "text"] for c in chunks]
    text = "".join((p.get("content") or "") if chat else p for p in pieces)
    assert text == TEXT
