"""Our runtime (frontend + mock engine over NATS) vs NVIDIA Dynamo 1.6.1 (frontend + mocker).

One invocation, same offline model directory, same closed-loop streaming load (benchmarks/
loadgen.py: ~113 prompt tokens, 128 output tokens, ignore_eos, one token per SSE chunk) at
each concurrency and engine speedup, both systems bound to 127.0.0.1 and stopped by PID.
Prints req/s, output tok/s, TTFT p50/p99, mean ITL and frontend CPU-ms per request for both,
and the ratio ours/Dynamo.

    python benchmarks/runtime_vs_dynamo.py --quick --json out.json   # c=64, speedup 1000
    python benchmarks/runtime_vs_dynamo.py --json out.json           # c=1,8,64 x speedup 10,1000

Both systems are started by benchmarks/systems.py (shared with kv_routing.py): Dynamo with its
default planes (TCP request plane, file discovery, ZMQ event plane through a loopback broker,
so nothing binds 0.0.0.0), one worker each.

Between the systems' runs of every repetition, the mock engine's own ceiling is measured too
(benchmarks/mock_engine_ceiling.py's closed loop, in this process, no serving path; the best
of the clients in lockstep and with 5 ms of jitter). Each ratio line then says what share of
that ceiling each system reached and what share the req/s target (1.3x Dynamo's) would need:
near 100% no serving path can get there (every request still crosses one), above it nothing can.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LevelResult, discover_model, run_level
from mock_engine_ceiling import ISL_TOKENS, closed_loop
from systems import MODEL_DIR, MODEL_NAME, Shape, System, ensure_dynamo, start, stop_all


# -- driver ------------------------------------------------------------------------------------
@dataclass
class Setting:
    """One measured point."""

    system: str
    speedup: float
    client_mode: str
    concurrency: int
    result: dict[str, Any]


def measure(
    system: System,
    speedup: float,
    concurrencies: list[int],
    modes: list[str],
    osl: int,
    isl_words: int,
    per_worker: int,
    min_requests: int,
) -> Iterator[Setting]:
    """Run every (mode, concurrency) level against a running system."""
    pids = {
        "frontend": system.frontend_pid,
        **{p.name: p.pid for p in system.procs if p.name != "frontend"},
    }

    async def go() -> list[tuple[str, LevelResult]]:
        model = await discover_model(system.url)
        out = []
        for mode in modes:
            for c in concurrencies:
                total = max(min_requests, c * per_worker)
                res = await run_level(
                    system.url, model, c, total, osl, isl_words, mode == "newconn", pids
                )
                out.append((mode, res))
        return out

    try:
        import uvloop

        levels = uvloop.run(go())
    except ImportError:
        levels = asyncio.run(go())
    load1 = os.getloadavg()[0]  # the machine is shared: the load goes beside every number
    for mode, res in levels:
        yield Setting(system.label, speedup, mode, res.concurrency, {**asdict(res), "load1": load1})


# Lockstep clients (the engine prefills them together) and desynchronized ones; the better one
# is the ceiling.
CEILING_JITTERS_MS = (0.0, 5.0)
TARGET_REQ_S_RATIO = 1.3  # issue 16's acceptance: req/s >= 1.3x Dynamo's


def measure_ceiling(
    speedup: float, concurrencies: list[int], seconds: float, osl: int
) -> dict[int, float]:
    """req/s of the mock engine alone at each concurrency (best over the jitters)."""
    import uvloop  # a dependency of the runtime

    out: dict[int, float] = {}
    for c in concurrencies:
        out[c] = max(
            uvloop.run(closed_loop(speedup, c, seconds, ISL_TOKENS, osl, jitter))["req_s"]
            for jitter in CEILING_JITTERS_MS
        )
        print(f"engine ceiling s{speedup:g} c={c}: {out[c]:.1f} req/s", flush=True)
    return out


@dataclass(frozen=True)
class CeilingShares:
    """Shares of the engine's own ceiling: reached by each system, and needed by the target."""

    ours: float
    dynamo: float
    target: float


def ceiling_shares(
    ours_req_s: float, dynamo_req_s: float, ceiling_req_s: float, ratio: float = TARGET_REQ_S_RATIO
) -> CeilingShares:
    """What fraction of the mock engine's ceiling each system served, and what fraction
    ``ratio`` times Dynamo's req/s would be (above 1.0: beyond what the engine alone can do)."""
    if ceiling_req_s <= 0:
        raise ValueError(f"ceiling must be positive, got {ceiling_req_s}")
    return CeilingShares(
        ours=ours_req_s / ceiling_req_s,
        dynamo=dynamo_req_s / ceiling_req_s,
        target=ratio * dynamo_req_s / ceiling_req_s,
    )


def foreign_pct(r: dict[str, Any]) -> float:
    """Machine busy % not explained by the measured processes (other load on the machine)."""
    own_s = float(sum(r["cpu_ms_per_req"].values())) * float(r["requests"]) / 1e3
    own_pct = 100.0 * own_s / (float(r["wall_s"]) * (os.cpu_count() or 1))
    return max(0.0, float(r["machine_busy_pct"]) - own_pct)


def server_cpu_ms(r: dict[str, Any]) -> float:
    """CPU-ms per request of all processes but the load generator."""
    return float(sum(v for k, v in r["cpu_ms_per_req"].items() if k != "client"))


def fmt_row(s: Setting) -> str:
    """One table row."""
    r = s.result
    return (
        f"{s.system:7s} s{s.speedup:<5g} {s.client_mode:9s} c={s.concurrency:<3d} "
        f"{r['req_s']:8.1f} {r['out_tok_s']:9.0f} {r['ttft_p50_ms']:8.2f} "
        f"{r['ttft_p99_ms']:8.2f} {r['itl_mean_ms']:7.3f} "
        f"{r['cpu_ms_per_req'].get('frontend', 0):8.2f} {server_cpu_ms(r):7.2f} "
        f"{r['content_chunks_per_req']:6.1f} {r['machine_busy_pct']:5.0f}% "
        f"{foreign_pct(r):5.0f}% {r['errors']:4d} {r.get('load1', 0.0):5.1f}"
    )


HEADER = (
    "system  speed  client    conc       req/s     tok/s  TTFT p50 TTFT p99  ITL ms "
    "FE ms/req srv ms chunks  busy foreign err load1"
)


def median_settings(settings: list[Setting]) -> list[Setting]:
    """Per (system, speedup, mode, concurrency): the repetition with the median req/s."""
    groups: dict[tuple[str, float, str, int], list[Setting]] = {}
    for s in settings:
        groups.setdefault((s.system, s.speedup, s.client_mode, s.concurrency), []).append(s)
    out = []
    for group in groups.values():
        ordered = sorted(group, key=lambda s: s.result["req_s"])
        out.append(ordered[(len(ordered) - 1) // 2])
    return out


def run_system(
    name: str, speedup: float, args: argparse.Namespace, concurrencies: list[int], modes: list[str]
) -> list[Setting]:
    """Start one system, measure every level, stop it."""
    out: list[Setting] = []
    with tempfile.TemporaryDirectory(prefix=f"dgd-bench-{name}-") as tmp:
        workdir = Path(tmp)
        system = start(name, Shape(speedup=speedup), workdir, args.dynamo_plane)
        try:
            for s in measure(
                system,
                speedup,
                concurrencies,
                modes,
                args.osl,
                args.isl_words,
                args.requests_per_worker,
                args.min_requests,
            ):
                out.append(s)
                print(fmt_row(s), flush=True)
        finally:
            stop_all(system.procs)
    return out


def main() -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="concurrency 64, speedup 1000 only")
    ap.add_argument("--json", default=None, help="write all results here")
    ap.add_argument("--concurrency", default=None, help="default 1,8,64 (quick: 64)")
    ap.add_argument("--speedups", default=None, help="default 10,1000 (quick: 1000)")
    ap.add_argument(
        "--client-modes", default=None, help="newconn,keepalive (default: both; quick: newconn)"
    )
    ap.add_argument("--systems", default="ours,dynamo")
    ap.add_argument("--dynamo-plane", default="tcp", choices=("tcp", "nats"))
    ap.add_argument("--osl", type=int, default=128)
    ap.add_argument("--isl-words", type=int, default=96)
    ap.add_argument("--requests-per-worker", type=int, default=32)
    ap.add_argument("--min-requests", type=int, default=200)
    ap.add_argument(
        "--ceiling-seconds",
        type=float,
        default=5.0,
        help="seconds per mock-engine ceiling run, one per repetition, speedup, concurrency "
        "and jitter (0: skip the ceiling)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="repetitions, systems interleaved; the median is reported (default 3)",
    )
    args = ap.parse_args()
    repeat = args.repeat or 3
    concurrencies = [
        int(c) for c in (args.concurrency or ("64" if args.quick else "1,8,64")).split(",")
    ]
    speedups = [
        float(s) for s in (args.speedups or ("1000" if args.quick else "10,1000")).split(",")
    ]
    modes = (args.client_modes or ("newconn" if args.quick else "newconn,keepalive")).split(",")
    systems = args.systems.split(",")
    if "dynamo" in systems or not (MODEL_DIR / "tokenizer.json").exists():
        ensure_dynamo()  # also builds the shared model dir

    settings: list[Setting] = []
    ceilings: dict[tuple[float, int], list[float]] = {}
    print(HEADER, flush=True)
    for speedup in speedups:
        for rep in range(repeat):
            order = systems if rep % 2 == 0 else list(reversed(systems))
            for i, name in enumerate(order):
                settings.extend(run_system(name, speedup, args, concurrencies, modes))
                if i == 0 and args.ceiling_seconds > 0:  # between the systems: the same hour
                    found = measure_ceiling(speedup, concurrencies, args.ceiling_seconds, args.osl)
                    for c, req_s in found.items():
                        ceilings.setdefault((speedup, c), []).append(req_s)
    ceiling = {k: statistics.median(v) for k, v in ceilings.items()}

    all_runs = settings
    settings = median_settings(all_runs)
    print(f"\nmedian of {repeat} repetition(s):")
    print(HEADER)
    for s in sorted(settings, key=lambda s: (s.speedup, s.client_mode, s.concurrency, s.system)):
        print(fmt_row(s))
    ratios: dict[str, float] = {}
    print("\nratio ours/dynamo:")
    for s in settings:
        if s.system != "ours":
            continue
        peer = next(
            (
                d
                for d in settings
                if d.system == "dynamo"
                and d.speedup == s.speedup
                and d.client_mode == s.client_mode
                and d.concurrency == s.concurrency
            ),
            None,
        )
        if peer is None or not peer.result["req_s"]:
            continue
        key = f"s{s.speedup:g}_{s.client_mode}_c{s.concurrency}"
        rq = s.result["req_s"] / peer.result["req_s"]
        peer_cpu = peer.result["cpu_ms_per_req"].get("frontend", 0.0)
        cpu = s.result["cpu_ms_per_req"].get("frontend", 0.0) / peer_cpu if peer_cpu else 0.0
        ratios[f"req_s_{key}"] = rq
        ratios[f"frontend_cpu_ms_{key}"] = cpu
        # CPU of every server-side process per request (frontend, worker, broker/nats):
        # less sensitive to other load on the machine than req/s.
        srv = server_cpu_ms(s.result) / (server_cpu_ms(peer.result) or 1.0)
        ratios[f"server_cpu_ms_{key}"] = srv
        line = (
            f"  {key:28s} req/s x{rq:5.2f}   frontend CPU-ms/req x{cpu:5.2f}   "
            f"all-server CPU-ms/req x{srv:5.2f}"
        )
        top = ceiling.get((s.speedup, s.concurrency))
        if top:
            shares = ceiling_shares(s.result["req_s"], peer.result["req_s"], top)
            ratios[f"ceiling_share_ours_{key}"] = shares.ours
            ratios[f"ceiling_share_dynamo_{key}"] = shares.dynamo
            ratios[f"ceiling_share_target_{key}"] = shares.target
            line += (
                f"   engine ceiling {top:.0f}: ours {shares.ours:.0%}, dynamo "
                f"{shares.dynamo:.0%}, {TARGET_REQ_S_RATIO:g}x dynamo needs {shares.target:.0%}"
            )
        print(line)
    c64 = [v for k, v in ratios.items() if k.startswith("req_s_") and k.endswith("_c64")]
    out = {
        "model_dir": str(MODEL_DIR),
        "model": MODEL_NAME,
        "osl": args.osl,
        "isl_words": args.isl_words,
        "dynamo_plane": args.dynamo_plane,
        "repeat": repeat,
        "settings": [asdict(s) for s in settings],
        "all_runs": [asdict(s) for s in all_runs],
        "ratios": ratios,
        "engine_ceiling_req_s": {
            f"s{sp:g}_c{c}": {"median": ceiling[(sp, c)], "runs": runs}
            for (sp, c), runs in ceilings.items()
        },
        "ratio_req_s_c64": min(c64) if c64 else None,
    }
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    print(f"\nratio_req_s_c64 (worst over settings): {out['ratio_req_s_c64']}")
    return 0


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so every started process is stopped by the finally blocks.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
