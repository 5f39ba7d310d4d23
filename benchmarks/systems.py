"""Start the two systems the runtime benchmarks compare, the same way for every benchmark.

- ours: nats-server + N `dgd_runtime.worker --engine mock` processes (each with a status
  server) + `dgd_runtime.frontend`;
- NVIDIA Dynamo 1.6.1: a loopback ZMQ broker (event plane) + N `dynamo.mocker` processes (one
  worker each, so each has its own status server and request counter: with `--num-workers N`
  one process serves only the first worker's metrics) + `dynamo.frontend`, file discovery, TCP
  request plane (or NATS with `plane="nats"`).

Both are described by one :class:`Shape` (workers, engine speedup, router mode, KV block size
and count), use the same offline model directory, bind 127.0.0.1 only and are stopped by PID
(:func:`stop_all`). Dynamo's venv is built by /work/shared/bench/dynamo-peer/
setup_dynamo_venv.sh when missing (cached under ~/.cache/dgd/).
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("DGD_CACHE", Path.home() / ".cache" / "dgd"))
PEER = Path(os.environ.get("DYNAMO_PEER_DIR", "/work/shared/bench/dynamo-peer"))
DYN_VENV = Path(os.environ.get("DYNAMO_VENV", CACHE / "dynamo-venv"))
MODEL_DIR = Path(os.environ.get("BENCH_MODEL_DIR", CACHE / "models" / "qwen2.5-0.5b-mock"))
MODEL_NAME = "Qwen/Qwen2.5-0.5B-Instruct"


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_low_port() -> int:
    """A free loopback port below 32768 (Dynamo 1.6.1 parses DYN_SYSTEM_PORT as an i16)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 32768")


@dataclass
class Proc:
    """A child process we started (stopped by PID)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """Process id."""
        return self.popen.pid


@dataclass
class System:
    """A running system under test."""

    label: str
    url: str
    frontend_pid: int
    procs: list[Proc] = field(default_factory=list)
    worker_metrics_urls: dict[str, str] = field(default_factory=dict)

    def pids(self) -> dict[str, int]:
        """name -> PID of every process, for CPU accounting."""
        return {p.name: p.pid for p in self.procs}

    def requests_per_worker(self) -> dict[str, float]:
        """Requests each worker's `generate` endpoint has received so far."""
        return {
            name: worker_requests(http_get(url)[1].decode(errors="replace"))
            for name, url in self.worker_metrics_urls.items()
        }


@dataclass(frozen=True)
class Shape:
    """What both systems are started with."""

    workers: int = 1
    speedup: float = 1000.0
    router_mode: str = "round-robin"
    block_size: int | None = None
    kv_blocks: int | None = None
    namespace: str = "bench"


def spawn(name: str, cmd: list[str], env: dict[str, str], workdir: Path) -> Proc:
    """Start `cmd` with output to workdir/<name>.log."""
    log = workdir / f"{name}.log"
    fh = open(log, "wb")  # noqa: SIM115 - handed to the child
    popen = subprocess.Popen(
        cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    fh.close()
    return Proc(name, popen, log)


def stop_all(procs: list[Proc]) -> None:
    """SIGTERM in reverse start order, then SIGKILL stragglers; by PID only."""
    for p in reversed(procs):
        if p.popen.poll() is None:
            p.popen.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.popen.wait(10)
        except subprocess.TimeoutExpired:
            p.popen.kill()
            p.popen.wait(5)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body of a GET (status 0 when unreachable)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except OSError:
        return 0, b""


def wait_ready(system: System, check: Callable[[System], bool], timeout: float = 180.0) -> None:
    """Poll until `check(system)` is true; fail if a process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in system.procs:
            if p.popen.poll() is not None:
                raise RuntimeError(
                    f"{system.label}: {p.name} exited {p.popen.returncode}; "
                    f"log tail:\n{p.log.read_text(errors='replace')[-3000:]}"
                )
        if check(system):
            return
        time.sleep(0.3)
    raise RuntimeError(f"{system.label}: not ready after {timeout}s")


def ready_with_workers(n: int) -> Callable[[System], bool]:
    """Ready check: `/health` lists `n` generate instances and `/v1/models` the model."""

    def ready(s: System) -> bool:
        status, body = http_get(s.url + "/health")
        if status != 200:
            return False
        instances = orjson.loads(body).get("instances", [])
        generate = [i for i in instances if i.get("endpoint", "generate") == "generate"]
        return len(generate) >= n and MODEL_NAME.encode() in http_get(s.url + "/v1/models")[1]

    return ready


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def prom_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of metric `name` in Prometheus text format."""
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1) == name:
            out.append((dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def worker_requests(prom_text: str, endpoint: str = "generate") -> float:
    """Requests a worker's endpoint received (`dynamo_component_requests_total`; ours has no
    endpoint label, Dynamo's also counts its KV-query endpoint, which is excluded)."""
    return sum(
        v
        for labels, v in prom_samples(prom_text, "dynamo_component_requests_total")
        if labels.get("dynamo_endpoint", endpoint) == endpoint
    )


# -- our runtime -------------------------------------------------------------------------------
def start_ours(shape: Shape, workdir: Path, frontend_args: tuple[str, ...] = ()) -> System:
    """nats-server + `shape.workers` mock workers + our frontend."""
    from dgd_runtime.local.nats_server import NatsServer

    (workdir / "nats").mkdir(exist_ok=True)
    nats = NatsServer(store_dir=str(workdir / "nats"))
    nats.start()
    assert nats.proc is not None
    procs = [Proc("nats", nats.proc, Path(nats.log_path))]
    env = {
        **os.environ,
        "NATS_SERVER": nats.url,
        "DYN_NAMESPACE": shape.namespace,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "runtime"), str(ROOT / "operator")]),
    }
    env.pop("DYN_SYSTEM_PORT", None)
    engine_args: list[str] = []
    if shape.block_size is not None:
        engine_args += ["--block-size", str(shape.block_size)]
    if shape.kv_blocks is not None:
        engine_args += ["--num-gpu-blocks", str(shape.kv_blocks)]
    metrics: dict[str, str] = {}
    try:
        for i in range(shape.workers):
            sys_port = free_port()
            name = f"worker{i}" if shape.workers > 1 else "worker"
            metrics[name] = f"http://127.0.0.1:{sys_port}/metrics"
            procs.append(
                spawn(
                    name,
                    [
                        sys.executable,
                        "-m",
                        "dgd_runtime.worker",
                        "--model-path",
                        str(MODEL_DIR),
                        "--model-name",
                        MODEL_NAME,
                        "--engine",
                        "mock",
                        "--speedup-ratio",
                        str(shape.speedup),
                        *engine_args,
                        "--system-host",
                        "127.0.0.1",
                        "--system-port",
                        str(sys_port),
                    ],
                    env,
                    workdir,
                )
            )
        port = free_port()
        fe = spawn(
            "frontend",
            [
                sys.executable,
                "-m",
                "dgd_runtime.frontend",
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(port),
                "--router-mode",
                shape.router_mode,
                *frontend_args,
            ],
            env,
            workdir,
        )
        procs.append(fe)
        system = System("ours", f"http://127.0.0.1:{port}", fe.pid, procs, metrics)
        wait_ready(system, ready_with_workers(shape.workers))
        return system
    except BaseException:
        stop_all(procs)
        raise


# -- NVIDIA Dynamo -----------------------------------------------------------------------------
def ensure_dynamo() -> Path:
    """The Dynamo venv's python (built by the peer setup script when missing)."""
    python = DYN_VENV / "bin" / "python"
    if not python.exists() or not (MODEL_DIR / "tokenizer.json").exists():
        env = {**os.environ, "VENV": str(DYN_VENV), "MODEL_DIR": str(MODEL_DIR)}
        subprocess.run(["bash", str(PEER / "setup_dynamo_venv.sh")], env=env, check=True)
    return python


def start_dynamo(shape: Shape, workdir: Path, plane: str = "tcp") -> System:
    """Dynamo's ZMQ broker + `shape.workers` mocker processes + its frontend."""
    python = ensure_dynamo()
    home = CACHE / "dynamo-home"
    home.mkdir(parents=True, exist_ok=True)
    (workdir / "kv").mkdir(parents=True, exist_ok=True)
    xsub, xpub, http_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DYN_SYSTEM_PORT")}
    env.update(
        {
            "HOME": str(home),
            "HF_HOME": str(home / "hf"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "DYN_LOG": "warn",
            "DYN_DISCOVERY_BACKEND": "file",
            "DYN_FILE_KV": str(workdir / "kv"),
            "DYN_REQUEST_PLANE": plane,
            "DYN_EVENT_PLANE": "zmq",
            "DYN_TCP_RPC_HOST": "127.0.0.1",
            "DYN_SYSTEM_HOST": "127.0.0.1",
            "DYN_EVENT_PLANE_HOST": "127.0.0.1",
            "DYN_TCP_RESPONSE_STREAM_HOST": "127.0.0.1",
            "DYN_ZMQ_BROKER_URL": f"xsub=tcp://127.0.0.1:{xsub} , xpub=tcp://127.0.0.1:{xpub}",
        }
    )
    engine_args: list[str] = []
    if shape.block_size is not None:
        engine_args += ["--block-size", str(shape.block_size)]
    if shape.kv_blocks is not None:
        engine_args += ["--num-gpu-blocks-override", str(shape.kv_blocks)]
    procs: list[Proc] = []
    metrics: dict[str, str] = {}
    try:
        if plane == "nats":
            from dgd_runtime.local.nats_server import NatsServer

            (workdir / "nats").mkdir(exist_ok=True)
            nats = NatsServer(store_dir=str(workdir / "nats"))
            nats.start()
            assert nats.proc is not None
            procs.append(Proc("nats", nats.proc, Path(nats.log_path)))
            env["NATS_SERVER"] = nats.url
        procs.append(
            spawn(
                "zmqbroker",
                [str(python), str(PEER / "zmq_broker.py"), str(xsub), str(xpub)],
                env,
                workdir,
            )
        )
        time.sleep(0.5)
        for i in range(shape.workers):
            sys_port = free_low_port()
            name = f"mocker{i}" if shape.workers > 1 else "mocker"
            metrics[name] = f"http://127.0.0.1:{sys_port}/metrics"
            procs.append(
                spawn(
                    name,
                    [
                        str(python),
                        "-m",
                        "dynamo.mocker",
                        "--model-path",
                        str(MODEL_DIR),
                        "--model-name",
                        MODEL_NAME,
                        "--num-workers",
                        "1",
                        "--speedup-ratio",
                        str(shape.speedup),
                        *engine_args,
                    ],
                    {**env, "DYN_SYSTEM_PORT": str(sys_port)},
                    workdir,
                )
            )
        fe = spawn(
            "frontend",
            [
                str(python),
                "-m",
                "dynamo.frontend",
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(http_port),
                "--router-mode",
                shape.router_mode,
            ],
            env,
            workdir,
        )
        procs.append(fe)
        system = System("dynamo", f"http://127.0.0.1:{http_port}", fe.pid, procs, metrics)
        wait_ready(system, ready_with_workers(shape.workers))
        return system
    except BaseException:
        stop_all(procs)
        raise


def start(name: str, shape: Shape, workdir: Path, dynamo_plane: str = "tcp") -> System:
    """Start `ours` or `dynamo` with `shape`."""
    if name == "ours":
        return start_ours(shape, workdir)
    if name == "dynamo":
        return start_dynamo(shape, workdir, dynamo_plane)
    raise ValueError(f"unknown system {name!r} (ours or dynamo)")
