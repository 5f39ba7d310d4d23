"""How long a vLLM worker's ``/metrics`` and ``/health`` take to answer while it serves load.

One nats-server, one ``--engine vllm`` worker (status server on), our frontend; closed-loop
streaming chat at ``--concurrency`` (``benchmarks/loadgen.py``) while a thread GETs the
worker's ``/metrics`` and ``/health`` in turn every ``--interval`` s and records each latency
(timeouts count as the timeout). ``--runtime DIR`` runs the worker from another checkout's
``runtime/`` (e.g. the code before a change) so both are measured the same way, one after the
other. ``--py-spy OUT`` records the worker with py-spy (all threads, idle ones included) during
the load into a speedscope file.

    .venv/bin/python benchmarks/worker_status_latency.py [--concurrency 32] [--runtime DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dgd_operator.dev import vllm_env
from dgd_runtime.local.nats_server import NatsServer, free_port
from engine_overhead import ENGINE_FLAGS, MODEL, _spawn, _stop, _wait_serving
from loadgen import run_level


def _poll(base: str, interval: float, timeout: float, stop: threading.Event) -> dict[str, Any]:
    """GET /metrics and /health in turn until ``stop``; latencies (s) per path."""
    seen: dict[str, list[float]] = {"/metrics": [], "/health": []}
    with httpx.Client(timeout=timeout) as client:
        while not stop.is_set():
            for path, latencies in seen.items():
                t0 = time.perf_counter()
                with contextlib.suppress(httpx.HTTPError):
                    client.get(base + path)
                latencies.append(time.perf_counter() - t0)
            stop.wait(interval)
    return {
        path: {
            "n": len(v),
            "p50_ms": round(statistics.median(v) * 1e3, 1) if v else None,
            "max_ms": round(max(v) * 1e3, 1) if v else None,
        }
        for path, v in seen.items()
    }


def main() -> int:
    """Run the load and the polling; print (and optionally write) the result as JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--osl", type=int, default=64)
    ap.add_argument("--interval", type=float, default=0.25)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--runtime", default=None, help="runtime/ dir the worker runs from")
    ap.add_argument("--py-spy", default=None, help="record the worker into this file")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    env = vllm_env.find()
    if env is None:
        raise SystemExit("the vLLM environment is not built (python -m dgd_operator.dev.vllm_env)")
    run_dir = Path(tempfile.mkdtemp(prefix="dgd-status-latency-"))
    nats = NatsServer(store_dir=str(run_dir / "nats"))
    os.makedirs(nats.store_dir, exist_ok=True)
    nats.start()
    port, system_port = free_port(), free_port()
    wenv = vllm_env.engine_process_env(env, run_dir)
    if args.runtime:
        wenv["PYTHONPATH"] = str(Path(args.runtime).resolve())
    worker_argv = [
        str(env.python), "-m", "dgd_runtime.worker", "--engine", "vllm",
        "--model", str(env.model), "--served-model-name", MODEL,
        "--nats-server", nats.url, "--namespace", "status",
        "--system-host", "127.0.0.1", "--system-port", str(system_port), *ENGINE_FLAGS,
    ]  # fmt: skip
    frontend_argv = [
        sys.executable, "-m", "dgd_runtime.frontend", "--http-host", "127.0.0.1",
        "--http-port", str(port), "--nats-server", nats.url, "--namespace", "status",
    ]  # fmt: skip
    worker = _spawn(worker_argv, wenv, run_dir / "worker.log")
    frontend = _spawn(frontend_argv, dict(os.environ), run_dir / "frontend.log")
    spy: subprocess.Popen[bytes] | None = None
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_serving(url, [worker, frontend], 900)
        idle = _poll_for(f"http://127.0.0.1:{system_port}", args, 3.0)
        stop = threading.Event()
        polled: dict[str, Any] = {}
        poller = threading.Thread(
            target=lambda: polled.update(
                _poll(f"http://127.0.0.1:{system_port}", args.interval, args.timeout, stop)
            )
        )
        if args.py_spy:
            spy_bin = Path(sys.executable).parent / "py-spy"
            spy = subprocess.Popen(
                [str(spy_bin), "record", "--pid", str(worker.pid), "--idle", "--threads",
                 "--format", "speedscope", "--output", args.py_spy, "--rate", "50"],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            )  # fmt: skip
        load_before = os.getloadavg()
        poller.start()
        level = asyncio.run(
            run_level(
                url, MODEL, args.concurrency, args.requests, args.osl, 64, False, {}, warmup=4
            )
        )
        stop.set()
        poller.join()
        result = {
            "runtime": args.runtime or "this checkout",
            "loadavg_before": [round(x, 1) for x in load_before],
            "loadavg_after": [round(x, 1) for x in os.getloadavg()],
            "idle": idle,
            "under_load": polled,
            "load": {k: v for k, v in asdict(level).items() if k != "cpu_ms_per_req"},
        }
        print(json.dumps(result, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
    finally:
        if spy is not None:
            spy.send_signal(2)
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(60)
        _stop(frontend)
        _stop(worker)
        nats.close()
    return 0


def _poll_for(base: str, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """Latencies of an idle worker's status endpoints over ``seconds``."""
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    return _poll(base, args.interval, args.timeout, stop)


if __name__ == "__main__":
    raise SystemExit(main())
