"""Processes of the real-engine tier: vLLM workers and our frontend, in their own process groups."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from dgd_operator.dev import vllm_env
from dgd_runtime.local.nats_server import free_port

MODEL_NAME = "tiny"
MAX_MODEL_LEN = 2048
"""Long enough that a request of MAX_MODEL_LEN - 16 tokens runs for seconds (the abort test)."""
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
READY = re.compile(r"dgd worker ready instance=(\S+)")


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
            m = READY.search(line)
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


TEXT_NAMESPACE = "enginetier"
"""The runtime namespace of the text tier's module-wide deployment (conftest's `deployment`)."""


def frontend(
    name: str, nats_url: str, namespace: str, *, router_mode: str | None = "kv", **env: str
) -> tuple[Proc, str]:
    """Our frontend on a free loopback port (not started yet) and its URL; `env` is laid over
    this process's environment."""
    port = free_port()
    argv = [
        sys.executable, "-m", "dgd_runtime.frontend",
        "--http-host", "127.0.0.1",
        "--http-port", str(port),
        "--nats-server", nats_url,
        "--namespace", namespace,
        *(["--router-mode", router_mode] if router_mode else []),
    ]  # fmt: skip
    return Proc(name, argv, dict(os.environ, **env)), f"http://127.0.0.1:{port}"


@dataclass
class Deployment:
    """Our frontend (KV router) in front of two vLLM workers."""

    url: str
    frontend: Proc
    workers: list[Proc]


@contextlib.contextmanager
def running(
    workers: list[Proc], server: Proc, url: str, run_dir: Path, *, expected_workers: int
) -> Iterator[Deployment]:
    """Start `workers` and the frontend `server`, wait until the frontend lists
    `expected_workers` instances of the model, and give the deployment; afterwards stop them
    all and keep each one's output beside the engines' caches (`<run_dir>/<name>.log`), for a
    failed run."""
    procs = [*workers, server]
    try:
        for p in procs:
            p.start()
        for w in workers:
            w.wait_ready()
        wait_models(url, server, expected_workers=expected_workers)
        yield Deployment(url, server, workers)
    finally:
        for p in procs:
            p.stop()
            (run_dir / f"{p.name}.log").write_text(p.text)


def wait_models(url: str, frontend: Proc, expected_workers: int, timeout: float = 60.0) -> None:
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


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def eventually(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def descendants(pid: int) -> dict[int, str]:
    """Every live descendant process of ``pid`` with its command line (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        with contextlib.suppress(OSError):
            found[child] = (
                (Path("/proc") / str(child) / "cmdline").read_bytes().decode(errors="replace")
            )
        todo.extend(children.get(child, []))
    return found


def engine_core_pid(worker: Proc) -> int:
    """The PID of the worker's vLLM engine-core process (the one that runs the model)."""
    assert worker.proc is not None
    found = descendants(worker.proc.pid)
    cores = [pid for pid, cmd in found.items() if cmd.startswith("VLLM::EngineCore")]
    assert len(cores) == 1, found
    return cores[0]
