"""Fixtures of the real-engine tier: a real nats-server, vLLM workers, our frontend, all processes.

The workers run ``python -m dgd_runtime.worker --engine vllm`` with the python of the pinned vLLM
environment (``python -m dgd_operator.dev.vllm_env ensure``, ``make vllm-env``) and the
repository's ``runtime/`` on PYTHONPATH; the frontend and the test run in the project's venv.
Without that environment the tier is skipped, except under ``CI=true`` where it fails: CI must
build it. Engines are expensive (tens of seconds to start, ~2 GiB each), so one pair serves the
whole session and no test starts more than two at once.

Every cache and temporary directory of vLLM, torch and Hugging Face points into the session's
run directory, the engines advertise 127.0.0.1 and never reach for a model hub.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from dgd_operator.dev import vllm_env
from dgd_runtime.local.nats_server import NatsServer, NatsServerUnavailableError, free_port

MODEL_NAME = "tiny"
MAX_MODEL_LEN = 512
BLOCK_SIZE = 32
START_TIMEOUT = 900.0
"""Seconds an engine may take to start: ~20 s on an idle machine, minutes on a loaded one."""
ENGINE_FLAGS: tuple[str, ...] = (
    "--max-model-len", str(MAX_MODEL_LEN),
    "--block-size", str(BLOCK_SIZE),
    "--enforce-eager",
    "--kv-cache-memory-bytes", str(64 << 20),
    "--enable-prefix-caching",
    "--dtype", "bfloat16",
)  # fmt: skip
_READY = re.compile(r"dgd worker ready instance=(\S+)")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> vllm_env.VllmEnv:
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


@dataclass
class Proc:
    """A server process of the tier, in its own process group (vLLM spawns two children)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    system_port: int = 0
    proc: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    instance_id: str = ""
    pump: threading.Thread | None = None

    def start(self) -> Proc:
        """Launch; output is collected by a thread (and watched for the worker's ready line)."""
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            m = _READY.search(line)
            if m:
                self.instance_id = m.group(1)
                self.ready.set()
        self.ready.set()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait for the ready line; fail with the process's output otherwise."""
        if not self.ready.wait(timeout) or not self.instance_id:
            raise AssertionError(f"{self.name} did not become ready:\n{self.log_tail()}")

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit by itself; its exit code."""
        assert self.proc is not None
        rc = self.proc.wait(timeout)
        if self.pump is not None:
            self.pump.join(10)  # it has read everything once the pipe closed
        return rc

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of output."""
        return "".join(self.output[-lines:])

    @property
    def text(self) -> str:
        """Everything the process printed so far."""
        return "".join(self.output)

    def metrics(self) -> str:
        """The worker's ``/metrics`` body."""
        return httpx.get(f"http://127.0.0.1:{self.system_port}/metrics", timeout=10).text

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after ``timeout``."""
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
        # The engine's children may outlive a worker that exited: the group goes in any case.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if self.pump is not None:
            self.pump.join(10)
        if proc.stdout is not None:
            proc.stdout.close()


def vllm_worker(
    env: vllm_env.VllmEnv,
    run_dir: Path,
    nats_url: str,
    namespace: str,
    name: str,
    extra: Sequence[str] = (),
) -> Proc:
    """A (not yet started) ``--engine vllm`` worker serving the tiny model as ``tiny``."""
    port = free_port()
    argv = [
        str(env.python), "-m", "dgd_runtime.worker",
        "--engine", "vllm",
        "--model", str(env.model),
        "--served-model-name", MODEL_NAME,
        "--nats-server", nats_url,
        "--namespace", namespace,
        "--system-host", "127.0.0.1",
        "--system-port", str(port),
        *ENGINE_FLAGS,
        *extra,
    ]  # fmt: skip
    return Proc(name, argv, vllm_env.engine_process_env(env, run_dir), system_port=port)


@dataclass
class Deployment:
    """Our frontend (KV router) in front of two vLLM workers."""

    url: str
    frontend: Proc
    workers: list[Proc]


@pytest.fixture(scope="session")
def deployment(vllm: vllm_env.VllmEnv, run_dir: Path, nats: NatsServer) -> Iterator[Deployment]:
    """Two vLLM workers (started together) and one frontend with ``--router-mode kv``."""
    namespace = "enginetier"
    workers = [
        vllm_worker(vllm, run_dir, nats.url, namespace, f"vllm-worker-{i}") for i in range(2)
    ]
    port = free_port()
    frontend_argv = [
        sys.executable, "-m", "dgd_runtime.frontend",
        "--http-host", "127.0.0.1",
        "--http-port", str(port),
        "--nats-server", nats.url,
        "--namespace", namespace,
        "--router-mode", "kv",
    ]  # fmt: skip
    frontend = Proc("frontend", frontend_argv, dict(os.environ))
    procs = [*workers, frontend]
    try:
        for p in procs:
            p.start()
        for w in workers:
            w.wait_ready()
        url = f"http://127.0.0.1:{port}"
        _wait_models(url, frontend, expected_workers=2)
        yield Deployment(url, frontend, workers)
    finally:
        for p in procs:
            p.stop()


def _wait_models(url: str, frontend: Proc, expected_workers: int, timeout: float = 60.0) -> None:
    """Wait until the frontend's /health lists ``expected_workers`` instances of the model."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            health = httpx.get(f"{url}/health", timeout=5).json()
            serving = [i for i in health.get("instances", []) if i.get("model") == MODEL_NAME]
            if len(serving) >= expected_workers:
                return
        time.sleep(0.2)
    raise AssertionError(f"the frontend never listed {MODEL_NAME!r}:\n{frontend.log_tail()}")
