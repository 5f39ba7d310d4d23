"""Images through our frontend into a real vision-language model on vLLM (the tiny LLaVA).

One vLLM worker serves the tiny LLaVA of ``dgd_operator.dev.vllm_env`` (CLIP tower, random
weights) behind our frontend. The weights are random, so the tests assert only what is a
function of the engine: a data-URL image is answered with tokens, the same image and text
twice hit vLLM's prefix cache, the same request gives the same greedy tokens, different
pixels give different greedy tokens, and an undecodable image is the client's error (also
one whose header is sound but whose data is corrupt: only the worker's decoder finds that).
"""

from __future__ import annotations

import base64
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.engine.support import (
    BLOCK_SIZE,
    MODEL_NAME,
    START_TIMEOUT,
    Deployment,
    frontend,
    metric,
    running,
    vllm_worker,
)

from dgd_operator.dev import vllm_env
from dgd_runtime.local.nats_server import NatsServer

pytestmark = [pytest.mark.engine, pytest.mark.timeout(int(START_TIMEOUT) + 300)]

TIMEOUT = 120.0
TEXT = (
    "Describe every detail of this picture in many careful words, please: the colours, "
    "the shapes, the light and anything else the tests of the engine may want to know."
)


def png(rgb: tuple[int, int, int], width: int = 64, height: int = 48) -> bytes:
    """A solid-colour RGB PNG (stdlib only: the test venv has no Pillow)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    row = b"\0" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def data_url(data: bytes) -> str:
    """A base64 ``data:`` URL of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(data).decode()


def chat(dep: Deployment, image: bytes, text: str = TEXT, **body: Any) -> httpx.Response:
    """POST a one-message chat: the image, then ``text`` (greedy, 8 tokens unless overridden).

    The image comes first so that every full KV block of the prompt holds part of it: a
    block of text alone would be shared by all tests and make cache hits depend on order.
    """
    body.setdefault("model", MODEL_NAME)
    body.setdefault("max_tokens", 8)
    body.setdefault("temperature", 0)
    body.setdefault("ignore_eos", True)
    body["messages"] = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": data_url(image)}},
                {"type": "text", "text": text},
            ],
        }
    ]
    return httpx.post(f"{dep.url}/v1/chat/completions", json=body, timeout=TIMEOUT)


def ok(resp: httpx.Response) -> dict[str, Any]:
    """The JSON body of a 200 response."""
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.fixture(scope="module")
def vlm(vllm: vllm_env.VllmEnv, run_dir: Path, nats: NatsServer) -> Iterator[Deployment]:
    """Two vLLM workers serving the tiny LLaVA as ``tiny``, and our frontend (KV router)."""
    if vllm.vlm is None:
        reason = "the tiny vision-language model is not built: run `python -m dgd_operator.dev.vllm_env ensure`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    namespace = "enginevlm"
    env = replace(vllm, model=vllm.vlm)
    workers = [vllm_worker(env, run_dir, nats.url, namespace, f"vllm-vlm-{i}") for i in range(2)]
    # The router's cache view comes from the engines' KV events alone: its own prediction
    # (a routed prompt counts as cached on its worker for a while) would send a repeated
    # image prompt back to the same worker even if the events never matched its hashes.
    server, url = frontend("vlm-frontend", nats.url, namespace, DGD_ROUTER_PREDICTED_CACHE_TTL="0")
    with running(workers, server, url, run_dir, expected_workers=2) as deployment:
        yield deployment


def test_an_image_is_answered_with_tokens(vlm: Deployment) -> None:
    body = ok(chat(vlm, png((200, 30, 30))))
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 8
    assert body["usage"]["prompt_tokens"] > 0


def served_requests(dep: Deployment) -> list[float]:
    """Requests each worker has received so far."""
    return [metric(w.metrics(), "dynamo_component_requests_total") for w in dep.workers]


def test_the_same_image_twice_is_served_from_the_prefix_cache(vlm: Deployment) -> None:
    image = png((30, 200, 30))
    first = ok(chat(vlm, image))
    again = ok(chat(vlm, image))
    prompt_tokens = first["usage"]["prompt_tokens"]
    assert prompt_tokens > 2 * BLOCK_SIZE
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    # The image's blocks are keyed by its content: the repeat reuses every full block (vLLM
    # recomputes the last prompt token). Exact only if the frontend counted the prompt as
    # vLLM did: the card's fixed image token count (16) replaced the frontend's estimate.
    expected = (prompt_tokens - 1) // BLOCK_SIZE * BLOCK_SIZE
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == expected
    assert again["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]


def test_different_images_give_different_greedy_tokens(vlm: Deployment) -> None:
    # Same text, same length of prompt, other pixels: greedy decoding still differs, because
    # the image's features fill its placeholder positions (and the cache must not mix them).
    red = ok(chat(vlm, png((255, 0, 0)), max_tokens=16))
    blue = ok(chat(vlm, png((0, 0, 255)), max_tokens=16))
    assert red["usage"]["prompt_tokens"] == blue["usage"]["prompt_tokens"]
    assert blue["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert red["choices"][0]["message"]["content"] != blue["choices"][0]["message"]["content"]


def test_an_undecodable_image_is_a_400_naming_its_content_part(vlm: Deployment) -> None:
    resp = chat(vlm, b"these bytes are not an image")
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == "messages[0].content[0].image_url"
    assert "cannot decode image" in error["message"]


def test_an_image_with_a_sound_header_but_corrupt_data_is_a_400_naming_its_part(
    vlm: Deployment,
) -> None:
    # The header (and so the size the frontend reads from it) is intact; the pixel data is
    # cut short, which only a full decode in the worker finds. Streaming too: the refusal
    # comes before any token, so the client still gets a plain 400.
    image = png((10, 10, 200))
    truncated = image[: len(image) // 2]  # inside IDAT (cutting only the tail still decodes)
    for stream in (False, True):
        resp = chat(vlm, truncated, stream=stream)
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["param"] == "messages[0].content[0].image_url"
        assert "cannot decode image" in error["message"]
    # The worker is unharmed.
    ok(chat(vlm, image))


def test_kv_router_sends_an_image_prompt_to_the_worker_whose_engine_cached_it(
    vlm: Deployment,
) -> None:
    # The router hashes an image prompt's blocks rooted in its media; the workers translate
    # vLLM's KV events of the image blocks to the same hashes (the media named in vLLM's
    # session_id). Each image is served once, wherever the router puts it (one after the
    # other, so no load differs), and then every continuation must go to that engine.
    images = (png((250, 200, 0)), png((0, 120, 250)))
    holders = []
    for image in images:
        counts = served_requests(vlm)
        ok(chat(vlm, image, max_tokens=1))
        [holder] = [i for i, n in enumerate(served_requests(vlm)) if n > counts[i]]
        holders.append(holder)
    time.sleep(1.0)  # KV events travel engine -> worker -> NATS -> router
    for image, holder in zip(images, holders, strict=True):
        for turn in range(3):
            counts = served_requests(vlm)
            body = ok(chat(vlm, image, TEXT + f" Turn {turn}.", max_tokens=1))
            served_by = [i for i, n in enumerate(served_requests(vlm)) if n > counts[i]]
            assert served_by == [holder]
            assert body["usage"]["prompt_tokens_details"]["cached_tokens"] >= 2 * BLOCK_SIZE
