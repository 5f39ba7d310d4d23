"""Disaggregated prefill -> decode on two real vLLM engines, with a real KV hand-off.

The prefill worker's engine is an ``ExampleConnector`` producer and the decode worker's a
consumer sharing one directory (the connector that runs on CPU). The decode engine has no
prefix cache of its own, so every cached token it reports came through the hand-off. Runs
after test_serving.py, whose two engines are gone by then (module-scoped), so no more than two
engines run at once.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.engine.support import (
    BLOCK_SIZE,
    MODEL_NAME,
    START_TIMEOUT,
    Deployment,
    eventually,
    frontend,
    metric,
    running,
    vllm_worker,
)

from dgd_operator.dev import vllm_env
from dgd_runtime.local.nats_server import NatsServer

pytestmark = [pytest.mark.engine, pytest.mark.timeout(int(START_TIMEOUT) + 300)]

TIMEOUT = 120.0


def _transfer_config(role: str, store: Path) -> str:
    return json.dumps(
        {
            "kv_connector": "ExampleConnector",
            "kv_role": role,
            "kv_connector_extra_config": {"shared_storage_path": str(store)},
        }
    )


@pytest.fixture(scope="module")
def kv_store(run_dir: Path) -> Path:
    """The directory the two engines hand KV blocks over through."""
    store = run_dir / "kv-store"
    store.mkdir(exist_ok=True)
    return store


@pytest.fixture(scope="module")
def disagg(
    vllm: vllm_env.VllmEnv, run_dir: Path, nats: NatsServer, kv_store: Path
) -> Iterator[Deployment]:
    """A prefill worker, a decode worker and a frontend; workers = [prefill, decode]."""
    namespace = "disaggtier"
    prefill = vllm_worker(
        vllm,
        run_dir,
        nats.url,
        namespace,
        "vllm-prefill",
        [
            "--disaggregation-mode",
            "prefill",
            "--kv-transfer-config",
            _transfer_config("kv_producer", kv_store),
        ],
    )
    decode = vllm_worker(
        vllm,
        run_dir,
        nats.url,
        namespace,
        "vllm-decode",
        [
            "--disaggregation-mode",
            "decode",
            "--no-enable-prefix-caching",
            "--kv-transfer-config",
            _transfer_config("kv_consumer", kv_store),
        ],
    )
    server, url = frontend("disagg-frontend", nats.url, namespace, router_mode=None)
    with running([prefill, decode], server, url, run_dir, expected_workers=1) as deployment:
        yield deployment


def _complete(dep: Deployment, prompt: str, max_tokens: int) -> dict[str, Any]:
    resp = httpx.post(
        f"{dep.url}/v1/completions",
        json={
            "model": MODEL_NAME,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0,
            "ignore_eos": True,
        },
        timeout=TIMEOUT,
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _modes(dep: Deployment) -> dict[str, float]:
    text = httpx.get(f"{dep.url}/metrics", timeout=10).text
    return {
        mode: metric(text, "dynamo_frontend_disagg_requests_total", mode=mode)
        for mode in ("disaggregated", "local_prefill")
    }


def _prefill_state(dep: Deployment) -> tuple[float, float]:
    """The prefill engine's unfinished requests and hand-offs whose KV it still stores."""
    text = dep.workers[0].metrics()
    return (
        metric(text, "dgd_engine_unfinished_requests"),
        metric(text, "dynamo_component_disagg_held_transfers"),
    )


def _stored(store: Path) -> list[Path]:
    return [p for p in store.iterdir() if p.is_dir()]


def test_decode_engine_reports_the_handed_over_prompt_as_cached(
    disagg: Deployment, kv_store: Path
) -> None:
    prompt = "def handed_over(x):\n    return [x * i for i in range(x)]\n" * 8
    before = _modes(disagg)
    handed = _complete(disagg, prompt, 16)
    after = _modes(disagg)
    assert after["disaggregated"] == before["disaggregated"] + 1
    prompt_tokens = handed["usage"]["prompt_tokens"]
    assert prompt_tokens > 4 * BLOCK_SIZE
    # The decode engine computed nothing of the prompt but the part of the last block the
    # connector does not store (it stores whole blocks; the last prompt token is recomputed).
    cached = handed["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= (prompt_tokens - 1) // BLOCK_SIZE * BLOCK_SIZE - BLOCK_SIZE
    assert cached > 0
    # The frontend released the hand-off once decoding started: nothing stays stored or held.
    eventually(lambda: _prefill_state(disagg) == (0, 0), 30, "the prefill side to let go")
    eventually(lambda: not _stored(kv_store), 30, "the stored KV to be deleted")

    # The same prompt again: the hand-off was deleted, so nothing is stored for it and the
    # decode engine computes the prompt itself unless the new prefill hands it over again.
    # Both ways the greedy tokens must be the same: the handed-over KV is the engine's own.
    again = _complete(disagg, prompt, 16)
    assert again["choices"][0]["text"] == handed["choices"][0]["text"]


def test_a_decode_worker_dying_after_the_hand_off_ends_the_stream_and_frees_the_prefill(
    disagg: Deployment, kv_store: Path
) -> None:
    decode = disagg.workers[1]
    body = {
        "model": MODEL_NAME,
        "prompt": "while decoding:\n    keep_going()\n" * 6,
        "max_tokens": 1500,
        "ignore_eos": True,
        "stream": True,
    }
    events: list[Any] = []
    with httpx.stream("POST", f"{disagg.url}/v1/completions", json=body, timeout=TIMEOUT) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else orjson.loads(data))
            if len(events) == 1:
                # The decode worker streams: the hand-off is done. It dies now.
                assert decode.proc is not None
                os.killpg(decode.proc.pid, signal.SIGKILL)
    # The stream ended (no hang) with an error event, not a normal finish.
    assert events and events[-1] != "[DONE]", events[-3:]
    assert "error" in events[-1], events[-1]
    assert not any(
        isinstance(e, dict) and e.get("choices") and e["choices"][0].get("finish_reason")
        for e in events
    )
    # The prefill side holds nothing for the dead decode worker.
    eventually(lambda: _prefill_state(disagg) == (0, 0), 60, "the prefill side to let go")
    eventually(lambda: not _stored(kv_store), 60, "the stored KV to be deleted")
