"""A vLLM worker that cannot start exits non-zero with vLLM's reason and is never healthy.

These run before the serving tests (file order) so that no more than two engines run at once.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import httpx
import pytest
from tests.engine.support import START_TIMEOUT, Proc, vllm_worker

from dgd_operator.dev.vllm_env import VllmEnv
from dgd_runtime.local.nats_server import NatsServer

pytestmark = [pytest.mark.engine, pytest.mark.timeout(int(START_TIMEOUT) + 120)]


def _health_codes_until_exit(worker: Proc, timeout: float) -> tuple[int, set[int]]:
    """Poll the worker's /health until it exits; its exit code and every status seen."""
    seen: set[int] = set()
    assert worker.proc is not None
    deadline = time.monotonic() + timeout
    while worker.proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            seen.add(
                httpx.get(f"http://127.0.0.1:{worker.system_port}/health", timeout=5).status_code
            )
        time.sleep(0.5)
    return worker.wait_exit(30), seen


def test_a_flag_vllm_does_not_know_is_a_usage_error(
    vllm: VllmEnv, run_dir: Path, nats: NatsServer
) -> None:
    worker = vllm_worker(vllm, run_dir, nats.url, "startfail", "bad-flag", ["--no-such-flag"])
    try:
        rc = worker.start().wait_exit(START_TIMEOUT)
    finally:
        worker.stop()
    assert rc == 2, worker.log_tail()
    assert "unrecognized arguments: --no-such-flag" in worker.text


def test_an_engine_vllm_refuses_exits_non_zero_with_the_reason_and_never_becomes_healthy(
    vllm: VllmEnv, run_dir: Path, nats: NatsServer
) -> None:
    # The CPU attention backend needs blocks of a multiple of 32 tokens: vLLM's engine core
    # refuses 16 while it initialises, after the worker's status server is up.
    worker = vllm_worker(
        vllm, run_dir, nats.url, "startfail", "bad-block-size", ["--block-size", "16"]
    )
    try:
        worker.start()
        rc, seen = _health_codes_until_exit(worker, START_TIMEOUT)
    finally:
        worker.stop()
    assert rc != 0, worker.log_tail()
    assert "vLLM failed to start" in worker.text, worker.log_tail()
    assert "block size" in worker.text.lower(), worker.log_tail()
    assert 200 not in seen
    assert "dgd worker ready" not in worker.text
