"""KV-aware routing quality: our frontend's `kv` router vs NVIDIA Dynamo 1.6.1's, 4 mock workers.

Workload (deterministic from --seed): `--system-prompts` long system prompts shared by many
users; each user holds one multi-turn conversation whose every turn re-sends the whole history
(system prompt, earlier user turns, earlier assistant replies) plus a new user message, so a
good router sends turn k+1 to the worker that cached turn k, and users of the same system
prompt to a worker that cached it. The assistant replies put back into the history are
synthetic text from the workload (not what the mock generated), so both systems see exactly
the same prompts. `--concurrency` closed-loop clients each take the next conversation and play
its turns back to back (keep-alive connection, streaming, `ignore_eos`).

Both systems are started by benchmarks/systems.py (shared with runtime_vs_dynamo.py), on the
same offline model dir with 4 workers of the same shape: block size
64, `--kv-blocks` KV blocks per worker (small on purpose, so one worker cannot hold every
system prompt and routing decides what stays cached), the same `--speedup-ratio` for the
mocks' simulated step times. Ours: nats-server, 4 `dgd_runtime.worker --engine mock`
processes, `dgd_runtime.frontend --router-mode kv`. Dynamo: 4 `dynamo.mocker` processes,
`dynamo.frontend --router-mode kv` (KV events over ZMQ through a loopback broker). A few short
unrelated requests warm each frontend up (tokenizer load, connections) before measuring. Everything binds 127.0.0.1 and is stopped by PID; each run has its own temp dir and
starts cold.

Measured per run:
- prefix-cache hit rate = sum(cached_tokens) / sum(prompt_tokens) over all requests, from
  `usage.prompt_tokens_details.cached_tokens` in the final stream chunk (both frontends report
  the engine's count there); also split into first turns and later turns;
- TTFT p50/p99 (send -> first content chunk);
- load balance = max / mean requests per worker (ours: each worker's
  `dynamo_component_requests_total` on its status server, the `generate` endpoint for Dynamo).

    python benchmarks/kv_routing.py --json out.json            # both systems, 2 repetitions

Variants of our system compare router options in the same invocation: `--variant NAME:K=V,...`
starts our system with those environment variables (e.g. `DGD_ROUTER_PREDICTED_CACHE_TTL=0`)
under NAME, which `--systems` can then list next to `ours` and `dynamo`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import WORDS as LOADGEN_WORDS
from loadgen import RequestResult, _connect, _one_request, discover_model, machine_busy_seconds
from systems import (
    MODEL_DIR,
    MODEL_NAME,
    Shape,
    ensure_dynamo,
    start,
    stop_all,
)

T = TypeVar("T")
# Single-token words (with their leading space) in the Qwen2.5 vocabulary.
WORDS = (
    *LOADGEN_WORDS,
    "we",
    "you",
    "they",
    "from",
    "this",
    "have",
    "or",
    "not",
    "are",
    "but",
    "all",
    "can",
    "one",
    "will",
    "more",
    "time",
)


# -- workload (pure) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkloadSpec:
    """Shape of the shared-prefix, multi-turn workload."""

    seed: int = 1
    system_prompts: int = 32
    conversations: int = 256
    turns: int = 4
    system_words: int = 512
    user_words: int = 48
    assistant_words: int = 48


@dataclass(frozen=True)
class Conversation:
    """One user's conversation: which system prompt, the user turns, the replies put back."""

    user: int
    system: int
    user_turns: tuple[str, ...]
    replies: tuple[str, ...]


def _text(rng: random.Random, tag: str, words: int) -> str:
    # The tag goes first, so two texts differ from their first token on.
    return tag + " " + " ".join(rng.choice(WORDS) for _ in range(words))


def system_prompts(spec: WorkloadSpec) -> list[str]:
    """The shared system prompts (distinct from the first word on)."""
    rng = random.Random(f"{spec.seed}-system")
    return [_text(rng, f"[system {i}]", spec.system_words) for i in range(spec.system_prompts)]


def build_conversations(spec: WorkloadSpec) -> list[Conversation]:
    """Every conversation of the workload, in the order clients take them.

    Users pick a system prompt uniformly at random (seeded), so the popularity of prompts is
    uneven in a realistic way while staying reproducible.
    """
    rng = random.Random(f"{spec.seed}-conversations")
    out = []
    for user in range(spec.conversations):
        system = rng.randrange(spec.system_prompts)
        turns = tuple(
            _text(rng, f"[user {user} turn {t}]", spec.user_words) for t in range(spec.turns)
        )
        replies = tuple(
            _text(rng, f"[reply {user} turn {t}]", spec.assistant_words)
            for t in range(spec.turns - 1)
        )
        out.append(Conversation(user, system, turns, replies))
    return out


def turn_messages(conv: Conversation, turn: int, systems: Sequence[str]) -> list[dict[str, str]]:
    """The chat messages of `turn` (0-based): the whole history plus the new user message."""
    messages = [{"role": "system", "content": systems[conv.system]}]
    for t in range(turn):
        messages.append({"role": "user", "content": conv.user_turns[t]})
        messages.append({"role": "assistant", "content": conv.replies[t]})
    messages.append({"role": "user", "content": conv.user_turns[turn]})
    return messages


# -- metrics (pure) ----------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def hit_rate(prompt_tokens: Sequence[int], cached_tokens: Sequence[int]) -> float:
    """Fraction of prompt tokens served from the prefix cache."""
    total = sum(prompt_tokens)
    return sum(cached_tokens) / total if total else 0.0


def balance(per_worker: dict[str, float]) -> float:
    """max / mean requests per worker (1.0 = perfectly even; 0 when nothing was served)."""
    values = list(per_worker.values())
    mean = statistics.fmean(values) if values else 0.0
    return max(values) / mean if mean else 0.0


def later_turn_ceiling(prompts: dict[tuple[int, int], int], block_size: int) -> float:
    """Best hit rate of turns after the first: all whole blocks of the previous turn's prompt.

    `prompts` maps (conversation, turn) -> prompt tokens. Each turn's prompt starts with the
    previous turn's whole prompt, so a router that always returns a conversation to the
    worker of its previous turn, on an engine that never evicts, serves exactly those blocks
    from cache (generated tokens are not in the next prompt: the history carries the
    workload's own replies). Turns whose previous turn failed are left out.
    """
    cached = total = 0
    for (conv, turn), tokens in prompts.items():
        prev = prompts.get((conv, turn - 1)) if turn > 0 else None
        if prev is not None:
            cached += prev // block_size * block_size
            total += tokens
    return cached / total if total else 0.0


def counter_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per-key increase between two scrapes (keys new in `after` count from 0)."""
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


# -- systems -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MockShape:
    """What both systems' mock workers are configured with."""

    workers: int = 4
    kv_blocks: int = 256
    block_size: int = 64
    speedup: float = 1.0

    def shape(self) -> Shape:
        """The launcher's description: KV router, this many workers and KV blocks."""
        return Shape(
            workers=self.workers,
            speedup=self.speedup,
            router_mode="kv",
            block_size=self.block_size,
            kv_blocks=self.kv_blocks,
            namespace="kvbench",
        )


# -- driver ------------------------------------------------------------------------------------
async def warm_up(url: str, model: str, requests: int = 8, concurrency: int = 4) -> None:
    """Short unrelated requests (load lazy state like the tokenizer before measuring)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    todo = list(range(requests))

    async def client() -> None:
        while todo:
            i = todo.pop()
            conn = await _connect(host, port)
            try:
                await _one_request(
                    conn,
                    host,
                    "/v1/chat/completions",
                    orjson.dumps(
                        {
                            "model": model,
                            "max_tokens": 4,
                            "stream": True,
                            "ignore_eos": True,
                            "stream_options": {"include_usage": True},
                            "messages": [{"role": "user", "content": f"[warm-up {i}] hello there"}],
                        }
                    ),
                    False,
                )
            finally:
                conn.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))


@dataclass
class TurnResult:
    """One request of the workload."""

    conversation: int
    turn: int
    result: RequestResult


async def drive(
    url: str,
    model: str,
    spec: WorkloadSpec,
    concurrency: int,
    osl: int,
) -> tuple[list[TurnResult], float]:
    """Play every conversation closed-loop with `concurrency` clients; (results, wall s)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing non-loopback URL {url}")
    systems = system_prompts(spec)
    pending = list(reversed(build_conversations(spec)))
    results: list[TurnResult] = []

    async def client() -> None:
        conn = None
        try:
            while pending:
                conv = pending.pop()
                for turn in range(spec.turns):
                    body = orjson.dumps(
                        {
                            "model": model,
                            "messages": turn_messages(conv, turn, systems),
                            "max_tokens": osl,
                            "stream": True,
                            "stream_options": {"include_usage": True},
                            "ignore_eos": True,
                        }
                    )
                    if conn is None:
                        conn = await _connect(host, port)
                    try:
                        res = await _one_request(conn, host, "/v1/chat/completions", body, True)
                    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                        res = RequestResult(False, error=repr(exc))
                    results.append(TurnResult(conv.user, turn, res))
                    if not res.ok:
                        conn.close()
                        conn = None
        finally:
            if conn is not None:
                conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return results, time.perf_counter() - t0


@dataclass
class RunResult:
    """One system, one repetition."""

    system: str
    rep: int
    requests: int
    errors: int
    wall_s: float
    req_s: float
    hit_rate: float
    hit_rate_first_turn: float
    hit_rate_later_turns: float
    later_turns_ceiling: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    ttft_p50_first_turn_ms: float
    ttft_p50_later_turns_ms: float
    balance: float
    per_worker_requests: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    machine_busy_pct: float = 0.0
    load_1min: float = 0.0
    """The machine's 1-minute load average at the end of the run."""
    first_error: str = ""


def summarize(
    system: str,
    rep: int,
    results: list[TurnResult],
    wall: float,
    per_worker: dict[str, float],
    block_size: int,
) -> RunResult:
    """Aggregate one run's requests."""
    ok = [r for r in results if r.result.ok]
    bad = [r for r in results if not r.result.ok]
    first = [r.result for r in ok if r.turn == 0]
    later = [r.result for r in ok if r.turn > 0]
    every = [r.result for r in ok]

    def rate(rs: list[RequestResult]) -> float:
        return hit_rate([r.prompt_tokens for r in rs], [r.cached_tokens for r in rs])

    return RunResult(
        system=system,
        rep=rep,
        requests=len(ok),
        errors=len(bad),
        wall_s=wall,
        req_s=len(ok) / wall if wall else 0.0,
        hit_rate=rate(every),
        hit_rate_first_turn=rate(first),
        hit_rate_later_turns=rate(later),
        later_turns_ceiling=later_turn_ceiling(
            {(r.conversation, r.turn): r.result.prompt_tokens for r in ok}, block_size
        ),
        ttft_p50_ms=percentile([r.ttft for r in every], 0.5) * 1e3,
        ttft_p99_ms=percentile([r.ttft for r in every], 0.99) * 1e3,
        ttft_p50_first_turn_ms=percentile([r.ttft for r in first], 0.5) * 1e3,
        ttft_p50_later_turns_ms=percentile([r.ttft for r in later], 0.5) * 1e3,
        balance=balance(per_worker),
        per_worker_requests=per_worker,
        first_error=bad[0].result.error if bad else "",
    )


def _cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    from loadgen import proc_cpu_seconds

    out = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            out[name] = proc_cpu_seconds(pid)
    return out


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``NAME:K=V,K=V`` -> (NAME, environment of that variant of our system)."""
    name, _, assignments = text.partition(":")
    env = dict(item.partition("=")[::2] for item in assignments.split(",") if item)
    if not name or name in ("ours", "dynamo") or any(not k for k in env):
        raise SystemExit(f"bad --variant {text!r} (expected NAME:K=V,... with a new NAME)")
    return name, env


@contextlib.contextmanager
def environment(changes: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``changes`` inside the block (the launcher passes it on)."""
    saved = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_once(
    name: str,
    rep: int,
    shape: MockShape,
    spec: WorkloadSpec,
    concurrency: int,
    osl: int,
    variant_env: dict[str, str] | None = None,
) -> RunResult:
    """Start one system cold (`variant_env`: a variant of ours), play the workload, stop it."""
    with tempfile.TemporaryDirectory(prefix=f"dgd-kvbench-{name}-") as tmp:
        workdir = Path(tmp)
        if variant_env is None:
            system = start(name, shape.shape(), workdir)
        else:
            with environment(variant_env):
                system = start("ours", shape.shape(), workdir)
        per_worker = system.requests_per_worker
        try:

            async def warm() -> str:
                model = await discover_model(system.url)
                await warm_up(system.url, model)
                return model

            model = _run_async(warm())
            before = per_worker()
            cpu0, busy0 = _cpu_seconds(system.pids()), machine_busy_seconds()
            results, wall = _run_async(drive(system.url, model, spec, concurrency, osl))
            busy = machine_busy_seconds() - busy0
            cpu1 = _cpu_seconds(system.pids())
            after = per_worker()
            run = summarize(
                name, rep, results, wall, counter_delta(before, after), shape.block_size
            )
            run.cpu_s = {k: cpu1[k] - cpu0[k] for k in cpu1 if k in cpu0}
            run.machine_busy_pct = 100.0 * busy / (wall * (os.cpu_count() or 1))
            run.load_1min = os.getloadavg()[0]
            return run
        finally:
            stop_all(system.procs)


def fmt_run(r: RunResult) -> str:
    """One table line."""
    workers = "/".join(f"{v:.0f}" for v in sorted(r.per_worker_requests.values()))
    return (
        f"{r.system:7s} rep{r.rep} {r.requests:5d} req {r.errors:3d} err {r.req_s:6.1f} req/s "
        f"hit {r.hit_rate:6.1%} (first {r.hit_rate_first_turn:6.1%}, later "
        f"{r.hit_rate_later_turns:6.1%} of {r.later_turns_ceiling:6.1%})  TTFT p50 {r.ttft_p50_ms:7.1f} p99 "
        f"{r.ttft_p99_ms:7.1f} ms  balance {r.balance:5.2f} [{workers}]  "
        f"busy {r.machine_busy_pct:3.0f}% load {r.load_1min:4.1f}"
    )


def add_workload_arguments(ap: argparse.ArgumentParser) -> None:
    """The workload's and the workers' shape, shared with the simulator (`kv_routing_sim.py`)."""
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--osl", type=int, default=32, help="output tokens per turn")
    ap.add_argument("--seed", type=int, default=1, help="workload seed")
    ap.add_argument("--system-prompts", type=int, default=32)
    ap.add_argument("--conversations", type=int, default=512)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--system-words", type=int, default=512)
    ap.add_argument("--user-words", type=int, default=48)
    ap.add_argument("--assistant-words", type=int, default=48)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--kv-blocks", type=int, default=256, help="KV blocks per worker")
    ap.add_argument("--block-size", type=int, default=64)


def workload_spec(args: argparse.Namespace) -> WorkloadSpec:
    """The workload the arguments of `add_workload_arguments` describe."""
    return WorkloadSpec(
        args.seed,
        args.system_prompts,
        args.conversations,
        args.turns,
        args.system_words,
        args.user_words,
        args.assistant_words,
    )


def main() -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", default=None, help="write all results here")
    ap.add_argument("--systems", default="ours,dynamo", help="ours, dynamo and variant names")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:K=V,... our system with these environment variables (repeatable)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="repetitions, systems interleaved; medians reported (default 2)",
    )
    add_workload_arguments(ap)
    ap.add_argument("--speedup-ratio", type=float, default=1.0)
    args = ap.parse_args()
    spec = workload_spec(args)
    shape = MockShape(args.workers, args.kv_blocks, args.block_size, args.speedup_ratio)
    variants = dict(parse_variant(v) for v in args.variant)
    systems = args.systems.split(",")
    unknown = [n for n in systems if n not in ("ours", "dynamo") and n not in variants]
    if unknown:
        raise SystemExit(f"unknown systems {unknown} (ours, dynamo or a --variant name)")
    if "dynamo" in systems or not (MODEL_DIR / "tokenizer.json").exists():
        ensure_dynamo()  # also builds the shared model dir

    runs: list[RunResult] = []
    for rep in range(args.repeat):
        for name in systems if rep % 2 == 0 else list(reversed(systems)):
            run = run_once(name, rep, shape, spec, args.concurrency, args.osl, variants.get(name))
            runs.append(run)
            print(fmt_run(run), flush=True)

    keys = (
        "hit_rate",
        "hit_rate_first_turn",
        "hit_rate_later_turns",
        "ttft_p50_ms",
        "ttft_p99_ms",
        "balance",
        "req_s",
    )
    medians: dict[str, dict[str, float]] = {}
    for name in systems:
        mine = [asdict(r) for r in runs if r.system == name]
        medians[name] = {k: statistics.median(float(r[k]) for r in mine) for k in keys}
        medians[name]["errors"] = float(sum(r["errors"] for r in mine))
    out: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "workload": asdict(spec),
        "shape": asdict(shape),
        "concurrency": args.concurrency,
        "osl": args.osl,
        "model_dir": str(MODEL_DIR),
        "model": MODEL_NAME,
        "variants": variants,
        "runs": [asdict(r) for r in runs],
        "median": medians,
    }
    if "ours" in medians and "dynamo" in medians:
        ours, dyn = medians["ours"], medians["dynamo"]
        out["hit_rate_ours_over_dynamo"] = (
            ours["hit_rate"] / dyn["hit_rate"] if dyn["hit_rate"] else None
        )
        out["balance_ours_over_dynamo"] = (
            ours["balance"] / dyn["balance"] if dyn["balance"] else None
        )
        out["ttft_p50_ours_over_dynamo"] = (
            ours["ttft_p50_ms"] / dyn["ttft_p50_ms"] if dyn["ttft_p50_ms"] else None
        )
    print("\nmedian over repetitions:")
    for name, m in medians.items():
        print(f"  {name:7s} " + "  ".join(f"{k} {v:.3f}" for k, v in m.items()))
    for k in ("hit_rate_ours_over_dynamo", "balance_ours_over_dynamo", "ttft_p50_ours_over_dynamo"):
        if k in out:
            print(f"{k}: {out[k]}")
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so every started process is stopped by the finally blocks.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
