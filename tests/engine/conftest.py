"""Fixtures of the real-engine tier: a real nats-server, vLLM workers, our frontend, all processes.

The workers run ``python -m dgd_runtime.worker --engine vllm`` with the python of the pinned vLLM
environment (``python -m dgd_operator.dev.vllm_env ensure``, ``make vllm-env``) and the
repository's ``runtime/`` on PYTHONPATH; the frontend and the test run in the project's venv.
Without that environment the tier is skipped, except under ``CI=true`` where it fails: CI must
build it. Engines are expensive (tens of seconds to start, ~2 GiB each), so one pair serves a whole
module and no more than two run at once.

Every cache and temporary directory of vLLM, torch and Hugging Face points into the session's
run directory, the engines advertise 127.0.0.1 and never reach for a model hub.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.engine.support import TEXT_NAMESPACE, Deployment, frontend, running, vllm_worker

from dgd_operator.dev import vllm_env
from dgd_runtime.local.nats_server import NatsServer, NatsServerUnavailableError


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def vllm() -> vllm_env.VllmEnv:
    """The pinned vLLM environment and tiny model (skip locally when absent, fail in CI)."""
    found = vllm_env.find()
    if found is None:
        reason = (
            "the vLLM environment is not built: run `python -m dgd_operator.dev.vllm_env ensure` "
            "(or `make vllm-env`) first"
        )
        if _in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Home of every cache, socket and temporary file the engines write."""
    return tmp_path_factory.mktemp("vllm-run")


@pytest.fixture(scope="session")
def nats(run_dir: Path) -> Iterator[NatsServer]:
    """One nats-server on a free loopback port for the session."""
    try:
        server = NatsServer(store_dir=str(run_dir / "nats"))
    except NatsServerUnavailableError as exc:
        if _in_ci():
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    os.makedirs(server.store_dir, exist_ok=True)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def deployment(vllm: vllm_env.VllmEnv, run_dir: Path, nats: NatsServer) -> Iterator[Deployment]:
    """Two vLLM workers (started together) and one frontend with ``--router-mode kv``."""
    namespace = TEXT_NAMESPACE
    workers = [
        vllm_worker(vllm, run_dir, nats.url, namespace, f"vllm-worker-{i}") for i in range(2)
    ]
    server, url = frontend("frontend", nats.url, namespace)
    with running(workers, server, url, run_dir, expected_workers=2) as deployment:
        yield deployment
