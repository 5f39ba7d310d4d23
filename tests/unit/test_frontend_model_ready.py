"""`dynamo_frontend_model_ready` is read at scrape time: a /metrics scrape reports whether the
model has live workers now, whether or not anything called /health in between."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.fixtures.fake_backend import FakeBackend

from dgd_runtime.frontend.app import start_frontend
from dgd_runtime.local.model_dir import build_model_dir
from dgd_runtime.protocol import ModelCard

pytestmark = pytest.mark.unit


def _ready(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith('dynamo_frontend_model_ready{model="tiny"}'):
            return line.rsplit(" ", 1)[1]
    return None


async def test_model_ready_follows_the_workers_without_health_calls(tmp_path: Path) -> None:
    model_dir = build_model_dir(tmp_path / "tiny", context_length=256)
    backend = FakeBackend([ModelCard("tiny", str(model_dir), 256, 16)], [1, 2, 3])
    frontend = await start_frontend(backend)
    try:
        async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as http:
            assert _ready((await http.get("/metrics")).text) == "1"
            cards, backend.cards = backend.cards, []  # the workers went away
            assert _ready((await http.get("/metrics")).text) == "0"
            backend.cards = cards  # and came back
            assert _ready((await http.get("/metrics")).text) == "1"
    finally:
        await frontend.close()
