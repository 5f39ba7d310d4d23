"""`dgd serve FILE`: run a DynamoGraphDeployment locally with the mock engine.

Starts, all on 127.0.0.1: an embedded nats-server, one mock-engine worker process per replica
of every worker service (componentType worker / prefill / decode), and the OpenAI frontend.
Prints the URL and a ready-to-paste curl, then waits for Ctrl-C / SIGTERM (or a child dying)
and stops every process it started, by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from dgd_runtime.testing.nats import NatsServer, free_port

WORKER_TYPES = ("worker", "prefill", "decode")
DEFAULT_MODEL_NAME = "dgd-tiny"


class ServeError(RuntimeError):
    """The DGD cannot be served locally (clear message for the user)."""


@dataclass
class WorkerSpec:
    """One worker process to start."""

    service: str
    replica: int
    component_type: str
    model_name: str | None


@dataclass
class ServePlan:
    """What `dgd serve` will start for a DGD."""

    name: str
    namespace: str
    workers: list[WorkerSpec] = field(default_factory=list)
    model_name: str = DEFAULT_MODEL_NAME


def _flag_value(args: list[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def _container_args(service: Any) -> list[str]:
    extra = getattr(service, "extra_pod_spec", None)
    main = getattr(extra, "main_container", None) if extra is not None else None
    if not isinstance(main, dict):
        return []
    out: list[str] = []
    for key in ("command", "args"):
        value = main.get(key)
        if isinstance(value, list):
            for item in value:
                # `bash -c "python -m dynamo.vllm --model X"` style: split shell strings.
                out.extend(shlex.split(str(item)) if " " in str(item) else [str(item)])
    return out


def plan_from_dgd(doc: dict[str, Any]) -> ServePlan:
    """Validate `doc` (via the API's parse_dgd) and list the processes to start."""
    from dgd_operator.api.validation import DGDValidationError, parse_dgd

    try:
        dgd = parse_dgd(doc)
    except DGDValidationError as exc:
        lines = [f"  {p.path}: {p.message}" for p in exc.problems]
        raise ServeError("invalid DynamoGraphDeployment:\n" + "\n".join(lines)) from None
    name = dgd.metadata.name or "dgd"
    plan = ServePlan(name=name, namespace=re.sub(r"[^a-zA-Z0-9_-]", "-", name))
    services = dgd.spec.services or {}
    for svc_name, svc in services.items():
        if svc is None:
            continue
        ctype = (svc.component_type or "").lower()
        sub = (svc.sub_component_type or "").lower()
        kind = sub if sub in ("prefill", "decode") else ctype
        if kind not in WORKER_TYPES:
            continue
        args = _container_args(svc)
        if kind == "worker":
            # Older graphs mark the role only in the engine arguments.
            mode = (_flag_value(args, "--disaggregation-mode") or "").lower()
            if "--is-prefill-worker" in args or mode == "prefill":
                kind = "prefill"
            elif "--is-decode-worker" in args or mode == "decode":
                kind = "decode"
        model = _flag_value(args, "--served-model-name", "--model", "--model-path", "--model-name")
        replicas = 1 if svc.replicas is None else svc.replicas
        for r in range(replicas):
            plan.workers.append(WorkerSpec(svc_name, r, kind, model))
    if not plan.workers:
        raise ServeError(
            f"DGD {name!r} has no worker services (componentType worker, prefill "
            "or decode) with replicas > 0"
        )
    models = {w.model_name for w in plan.workers if w.model_name}
    plan.model_name = sorted(models)[0] if models else DEFAULT_MODEL_NAME
    return plan


def default_model_dir() -> Path:
    """The tiny offline model (built once into the cache dir)."""
    from dgd_runtime.testing.model_dir import build_model_dir

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


def _child_env(nats_url: str, namespace: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DYN_SYSTEM_PORT",)}
    env.update(NATS_SERVER=nats_url, DYN_NAMESPACE=namespace, DYN_SYSTEM_HOST="127.0.0.1")
    # Children must import our packages even when run from a source checkout.
    roots = [
        str(Path(__file__).resolve().parents[1]),
        str(Path(__file__).resolve().parents[2] / "operator"),
    ]
    env["PYTHONPATH"] = os.pathsep.join([*roots, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


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
    plan: ServePlan,
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
        env = _child_env(nats.url, plan.namespace)
        if router_mode:
            env["DYN_ROUTER_MODE"] = router_mode

        def spawn(name: str, cmd: list[str], extra_env: dict[str, str] | None = None) -> None:
            out: int | TextIO = subprocess.DEVNULL
            log = log_dir / f"{name}.log" if log_dir is not None else None
            if log is not None:
                out = open(log, "w")  # noqa: SIM115 - handed to the child
            popen = subprocess.Popen(
                cmd,
                env={**env, **(extra_env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            if not isinstance(out, int):
                out.close()
            graph.children.append(Child(name, popen, log))

        for w in plan.workers:
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
            component = {"DYN_COMPONENT": "prefill" if w.component_type == "prefill" else "backend"}
            spawn(f"{w.service.lower()}-{w.replica}", cmd, component)
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
        )
        return graph
    except BaseException:
        graph.stop()
        raise


def run_serve(
    path: str,
    *,
    model_path: str | None = None,
    port: int = 8000,
    router_mode: str | None = None,
    speedup_ratio: float = 1.0,
    ready_timeout: float = 120.0,
    out: TextIO = sys.stdout,
) -> int:
    """Serve the DGD in `path` until interrupted; returns the exit code."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as exc:
        print(f"dgd serve: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    dgds = [d for d in docs if d.get("kind") == "DynamoGraphDeployment"]
    if len(dgds) != 1:
        print(
            f"dgd serve: {path} must contain exactly one DynamoGraphDeployment (found {len(dgds)})",
            file=sys.stderr,
        )
        return 2
    try:
        plan = plan_from_dgd(dgds[0])
    except ServeError as exc:
        print(f"dgd serve: {exc}", file=sys.stderr)
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
        n = len(plan.workers)
        print(
            f"dgd serve: {plan.name} is up: {n} mock worker{'s' if n != 1 else ''}, "
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
