"""Run a :class:`~dgd_runtime.local.plan.LocalPlan` on this machine (``dgd serve``).

Starts, all on 127.0.0.1: an embedded nats-server, one mock-engine worker process per replica
of every component, and the OpenAI frontend. Prints the URL and a ready-to-paste curl, then
keeps the graph up until Ctrl-C / SIGTERM: a process that exits is restarted with back-off
(:mod:`dgd_runtime.local.supervisor`) while the other replicas keep serving, and every exit,
restart and recovery is printed. On the way out it stops every process it started, by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Final, TextIO

from dgd_runtime.local.model_dir import build_model_dir
from dgd_runtime.local.nats_server import NatsServer, free_port
from dgd_runtime.local.plan import LocalPlan
from dgd_runtime.local.supervisor import (
    Process,
    Supervisor,
    describe_exit,
    log_says,
    port_accepts,
)

# What a worker (and the encode worker) prints once registered in discovery.
WORKER_READY_MARKER: Final = "dgd worker ready instance="


class ServeError(RuntimeError):
    """The graph cannot be served locally (clear message for the user)."""


def default_model_dir() -> Path:
    """The tiny offline model (built once into the cache dir)."""
    cache = Path(os.environ.get("DGD_CACHE", Path.home() / ".cache" / "dgd")) / "serve-model"
    target = cache / "dgd-tiny"
    if not (target / "tokenizer.json").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
        build_model_dir(tmp, name="dgd-tiny")
        with contextlib.suppress(OSError):  # another serve built it concurrently
            tmp.rename(target)
    return target


class LocalGraph:
    """The running processes of one `dgd serve`: nats-server plus the supervised children."""

    def __init__(self, report: Callable[[str], None] = lambda line: None) -> None:
        self.nats: NatsServer | None = None
        self.supervisor = Supervisor(report)

    @property
    def children(self) -> list[Process]:
        """The supervised processes, in start order (workers, then the frontend)."""
        return self.supervisor.processes

    def pids(self) -> list[int]:
        """PIDs of every running process (nats-server first)."""
        out = self.supervisor.pids()
        if self.nats is not None and self.nats.pid is not None:
            out.insert(0, self.nats.pid)
        return out

    def dead_child(self) -> Process | None:
        """A child that exited, if any."""
        return self.supervisor.exited()

    def keep_running(self) -> None:
        """One supervision round: restart nats-server or a child that exited, report it."""
        nats = self.nats
        if nats is not None and nats.proc is not None and nats.proc.poll() is not None:
            code, pid = nats.proc.returncode, nats.proc.pid
            nats.start()
            self.supervisor.report(
                f"nats-server (pid {pid}) {describe_exit(code)}; started it again on the same "
                f"port (pid {nats.pid}); the other processes reconnect"
            )
        self.supervisor.poll()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every child (frontend first), wait, SIGKILL stragglers, stop nats-server."""
        self.supervisor.stop(timeout)
        if self.nats is not None:
            self.nats.close()


def _base_env() -> dict[str, str]:
    """This process's environment without the variables a child must not inherit."""
    # A fixed status port would collide between replicas: local workers run without one.
    return {k: v for k, v in os.environ.items() if k != "DYN_SYSTEM_PORT"}


def _supervisor_env(nats_url: str, namespace: str) -> dict[str, str]:
    """The variables the supervisor owns: they win over the plan's."""
    # Children must import our package even when run from a source checkout.
    runtime_root = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join([runtime_root, os.environ.get("PYTHONPATH", "")])
    return {
        "NATS_SERVER": nats_url,
        "DYN_NAMESPACE": namespace,
        "DYN_SYSTEM_HOST": "127.0.0.1",
        "PYTHONPATH": pythonpath.rstrip(os.pathsep),
    }


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _wait_ready(url: str, model: str, graph: LocalGraph, timeout: float, stop: list[int]) -> None:
    """Wait until every child passed its ready check and the frontend lists ``model``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stop:
            raise ServeError("interrupted before the graph was ready")
        dead = graph.dead_child()
        if dead is not None:
            raise ServeError(dead.describe_exit())
        if graph.supervisor.all_ready():
            try:
                with urllib.request.urlopen(url + "/v1/models", timeout=1) as resp:
                    ids = [m["id"] for m in json.loads(resp.read())["data"]]
                    if model in ids:
                        return
            except (OSError, ValueError, KeyError):
                pass
        time.sleep(0.2)
    waiting = [p.name for p in graph.children if not p.ready]
    raise ServeError(
        f"model {model!r} not served after {timeout:.0f}s"
        + (f" (not ready: {', '.join(waiting)})" if waiting else "")
    )


def start_graph(
    plan: LocalPlan,
    *,
    model_dir: Path,
    port: int,
    router_mode: str | None,
    speedup_ratio: float,
    log_dir: Path,
    report: Callable[[str], None] = lambda line: None,
) -> LocalGraph:
    """Start nats-server, the workers and the frontend of `plan` (supervised, not yet restarting)."""
    graph = LocalGraph(report)
    try:
        nats = NatsServer(exit_with_parent=True)
        graph.nats = nats
        nats.start()
        base = _base_env()
        ours = _supervisor_env(nats.url, plan.namespace)
        if router_mode:
            ours["DYN_ROUTER_MODE"] = router_mode

        def spawn(
            name: str,
            group: str,
            cmd: list[str],
            env: dict[str, str],
            ready: Callable[[Process], bool],
        ) -> None:
            env = {**base, **env}
            env.pop("DYN_SYSTEM_PORT", None)
            graph.supervisor.add(Process(name, cmd, env, log_dir / f"{name}.log", ready, group))

        worker_ready = log_says(WORKER_READY_MARKER)
        for component in plan.components:
            for replica in range(component.replicas):
                name = f"{component.name.lower()}-{replica}"
                if component.role == "encode":
                    cmd = [
                        sys.executable,
                        "-m",
                        "dgd_runtime.encode",
                        "--model-path",
                        str(model_dir),
                        "--model-name",
                        plan.model_name,
                    ]
                    spawn(name, component.name, cmd, {**component.env, **ours}, worker_ready)
                    continue
                cmd = [
                    sys.executable,
                    "-m",
                    "dgd_runtime.worker",
                    "--model-path",
                    str(model_dir),
                    "--model-name",
                    plan.model_name,
                    "--engine",
                    "mock",
                    "--speedup-ratio",
                    str(speedup_ratio),
                ]
                env = {**component.env, **ours, "DYN_COMPONENT": component.role}
                spawn(name, component.name, cmd, env, worker_ready)
        spawn(
            "frontend",
            "Frontend",
            [
                sys.executable,
                "-m",
                "dgd_runtime.frontend",
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(port),
            ],
            ours,
            port_accepts("127.0.0.1", port),
        )
        return graph
    except BaseException:
        graph.stop()
        raise


def run_plan(
    plan: LocalPlan,
    *,
    model_path: str | None = None,
    port: int = 8000,
    router_mode: str | None = None,
    speedup_ratio: float = 1.0,
    ready_timeout: float = 120.0,
    out: TextIO = sys.stdout,
) -> int:
    """Serve ``plan`` until interrupted; returns the exit code (2: bad input, 1: failure)."""
    if plan.worker_count == 0:
        print(f"dgd serve: {plan.name!r} has no worker processes to start", file=sys.stderr)
        return 2
    model_dir = Path(model_path) if model_path else default_model_dir()
    if not (model_dir / "tokenizer.json").is_file():
        print(f"dgd serve: {model_dir} has no tokenizer.json", file=sys.stderr)
        return 2
    if port and port_in_use(port):
        print(
            f"dgd serve: port {port} on 127.0.0.1 is already in use (another dgd serve?); "
            "choose another with --port, or --port 0 for any free one",
            file=sys.stderr,
        )
        return 2
    port = port or free_port()
    stop_requested: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        stop_requested.append(signum)

    def report(line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"dgd serve: {stamp} {line}", file=out, flush=True)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    graph: LocalGraph | None = None
    log_dir: Path | None = None
    clean_exit = False
    try:
        log_dir = Path(tempfile.mkdtemp(prefix=f"dgd-serve-{plan.namespace}-"))
        graph = start_graph(
            plan,
            model_dir=model_dir,
            port=port,
            router_mode=router_mode,
            speedup_ratio=speedup_ratio,
            log_dir=log_dir,
            report=report,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, plan.model_name, graph, ready_timeout, stop_requested)
        except ServeError as exc:
            print(f"dgd serve: {exc}", file=sys.stderr)
            return 1
        body = json.dumps(
            {
                "model": plan.model_name,
                "messages": [{"role": "user", "content": "Hello!"}],
                "max_tokens": 32,
            }
        )
        print(
            f"dgd serve: {plan.name} is up: {plan.describe()} (mock engine), "
            f"model {plan.model_name!r}, NATS {graph.nats.url if graph.nats else '?'}",
            file=out,
        )
        print(f"pids: {' '.join(str(p) for p in graph.pids())}   logs: {log_dir}", file=out)
        print(f"OpenAI API: {url}/v1", file=out)
        print(
            f"curl -s {url}/v1/chat/completions -H 'Content-Type: application/json' -d '{body}'",
            file=out,
        )
        print(
            "Press Ctrl-C to stop. A process that exits is restarted (back-off "
            "1s, 2s, 4s ... 30s); the others keep serving.",
            file=out,
            flush=True,
        )
        graph.supervisor.restarting = True
        while not stop_requested:
            graph.keep_running()
            time.sleep(0.2)
        clean_exit = not any(p.last_exit is not None for p in graph.children)
        return 0
    finally:
        if graph is not None:
            graph.stop()
        if clean_exit and log_dir is not None:
            shutil.rmtree(log_dir, ignore_errors=True)
        elif log_dir is not None:  # something exited or failed: its log may say why
            print(f"dgd serve: logs kept in {log_dir}", file=sys.stderr)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
