"""Run a :class:`~dgd_runtime.local.plan.LocalPlan` on this machine (``dgd serve``).

Starts, all on 127.0.0.1: an embedded nats-server, one mock-engine worker process per replica
of every component, and the OpenAI frontend. Prints the URL and a ready-to-paste curl, then
waits for Ctrl-C / SIGTERM (or a child dying) and stops every process it started, by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from dgd_runtime.local.model_dir import build_model_dir
from dgd_runtime.local.nats_server import NatsServer, free_port
from dgd_runtime.local.plan import LocalPlan


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


@dataclass
class Child:
    """A process we started."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path | None = None

    def describe_exit(self) -> str:
        """`NAME exited with code N` plus the tail of its log."""
        text = f"{self.name} exited with code {self.popen.returncode}"
        if self.log is not None and self.log.is_file():
            tail = self.log.read_text(errors="replace").strip().splitlines()[-15:]
            text += f"; last lines of {self.log}:\n  " + "\n  ".join(tail)
        return text


class LocalGraph:
    """The running processes of one `dgd serve`."""

    def __init__(self) -> None:
        self.nats: NatsServer | None = None
        self.children: list[Child] = []

    def pids(self) -> list[int]:
        """PIDs of every process started (nats-server first)."""
        out = [c.popen.pid for c in self.children]
        if self.nats is not None and self.nats.pid is not None:
            out.insert(0, self.nats.pid)
        return out

    def dead_child(self) -> Child | None:
        """A child that exited, if any."""
        return next((c for c in self.children if c.popen.poll() is not None), None)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every child (frontend first), wait, SIGKILL stragglers, stop nats-server."""
        for child in reversed(self.children):
            if child.popen.poll() is None:
                child.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            try:
                child.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.popen.kill()
                child.popen.wait(5)
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


def _wait_model(url: str, model: str, graph: LocalGraph, timeout: float, stop: list[int]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stop:
            raise ServeError("interrupted before the graph was ready")
        dead = graph.dead_child()
        if dead is not None:
            raise ServeError(dead.describe_exit())
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=1) as resp:
                ids = [m["id"] for m in json.loads(resp.read())["data"]]
                if model in ids:
                    return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise ServeError(f"model {model!r} not served after {timeout:.0f}s")


def start_graph(
    plan: LocalPlan,
    *,
    model_dir: Path,
    port: int,
    router_mode: str | None,
    speedup_ratio: float,
    log_dir: Path | None = None,
) -> LocalGraph:
    """Start nats-server, the workers and the frontend of `plan`."""
    graph = LocalGraph()
    try:
        nats = NatsServer()
        graph.nats = nats
        nats.start()
        base = _base_env()
        ours = _supervisor_env(nats.url, plan.namespace)
        if router_mode:
            ours["DYN_ROUTER_MODE"] = router_mode

        def spawn(
            name: str, cmd: list[str], plan_env: dict[str, str], role_env: dict[str, str]
        ) -> None:
            out: int | TextIO = subprocess.DEVNULL
            log = log_dir / f"{name}.log" if log_dir is not None else None
            if log is not None:
                out = open(log, "w")  # noqa: SIM115 - handed to the child
            env = {**base, **plan_env, **ours, **role_env}
            env.pop("DYN_SYSTEM_PORT", None)
            popen = subprocess.Popen(
                cmd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            if not isinstance(out, int):
                out.close()
            graph.children.append(Child(name, popen, log))

        for component in plan.components:
            for replica in range(component.replicas):
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
                    spawn(f"{component.name.lower()}-{replica}", cmd, component.env, {})
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
                spawn(
                    f"{component.name.lower()}-{replica}",
                    cmd,
                    component.env,
                    {"DYN_COMPONENT": component.role},
                )
        spawn(
            "frontend",
            [
                sys.executable,
                "-m",
                "dgd_runtime.frontend",
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(port),
            ],
            {},
            {},
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
    port = port or free_port()
    stop_requested: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        stop_requested.append(signum)

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
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_model(url, plan.model_name, graph, ready_timeout, stop_requested)
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
        print("Press Ctrl-C to stop.", file=out, flush=True)
        while not stop_requested:
            dead = graph.dead_child()
            if dead is not None:
                print(f"dgd serve: {dead.describe_exit()}\nstopping", file=sys.stderr)
                return 1
            time.sleep(0.2)
        clean_exit = True
        return 0
    finally:
        if graph is not None:
            graph.stop()
        if clean_exit and log_dir is not None:
            shutil.rmtree(log_dir, ignore_errors=True)  # kept when something failed
        for sig, handler in previous.items():
            signal.signal(sig, handler)
