"""KV routing in simulated time: our KV policy over 4 in-process mock engines, no processes.

The same workload as `kv_routing.py` (same prompts, tokenized by the frontend's own
preprocessor from the benchmark's model dir) is played by closed-loop clients against
`--workers` :class:`MockEngine` instances routed by :class:`KvPolicy`, on an asyncio loop whose
clock only moves when every task waits: the engines' step times are simulated exactly and no
CPU contention or transport delay exists. KV events reach the policy `--event-lag-ms` after
the engine publishes them, and outputs reach the router (and the client) `--response-lag-ms`
after the engine emits them. So a run is deterministic and takes seconds, which makes it the tool
to compare routing policies (cost weights, options) on one machine while others are busy; the
real comparison with Dynamo stays `kv_routing.py`.

    python benchmarks/kv_routing_sim.py                       # current defaults, seed 1
    python benchmarks/kv_routing_sim.py --seeds 1,2,3,4 --variant new: \
        --variant dynamo-cost:overlap_score_weight=1,busy_prefill_weight=1,active_request_weight=0,predict_active_overlap=0,predicted_cache_ttl_s=0

Each `--variant NAME:k=v,k=v` is a policy configuration (keys are KvRouterConfig fields, the
rest stays default); each prints one line: medians over the router seeds (`--seeds`), with
every seed's hit rate and balance in brackets. Simulated TTFT has no frontend in it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import selectors
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dgd_runtime.engines.mock.engine import MockEngine, MockEngineConfig
from dgd_runtime.engines.mock.timing import MockTiming
from dgd_runtime.preprocess.tokenizer import load_preprocessor
from dgd_runtime.protocol import (
    KvEvent,
    ModelCard,
    PreprocessedRequest,
    SamplingOptions,
    WorkerInstance,
)
from dgd_runtime.router.policies import KvPolicy, KvRouterConfig
from kv_routing import (
    WorkloadSpec,
    add_workload_arguments,
    balance,
    build_conversations,
    hit_rate,
    percentile,
    system_prompts,
    turn_messages,
    workload_spec,
)
from systems import MODEL_DIR


# -- a loop whose clock jumps to the next timer ------------------------------------------------
class _JumpSelector(selectors.DefaultSelector):
    """Never waits: a select with a timeout advances the virtual clock by that timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if not ready and timeout:
            self.now += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on simulated time (only for code without real I/O)."""

    def __init__(self) -> None:
        self._jump = _JumpSelector()
        super().__init__(self._jump)

    def time(self) -> float:
        """Simulated seconds since the loop was made."""
        return self._jump.now


# -- simulation --------------------------------------------------------------------------------
@dataclass
class SimRequest:
    """One request's outcome."""

    conversation: int
    turn: int
    worker: str
    prompt_tokens: int
    cached_tokens: int
    ttft: float


@dataclass
class SimResult:
    """One variant's metrics (names as in kv_routing.py's RunResult)."""

    variant: str
    requests: int
    wall_s: float
    hit_rate: float
    hit_rate_first_turn: float
    hit_rate_later_turns: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    balance: float
    per_worker_requests: dict[str, float]


def tokenize_workload(spec: WorkloadSpec) -> dict[tuple[int, int], list[int]]:
    """Token ids of every (conversation, turn) prompt, as the frontend builds them."""
    prep = load_preprocessor(str(MODEL_DIR))
    systems = system_prompts(spec)
    out = {}
    for conv in build_conversations(spec):
        for turn in range(spec.turns):
            text = prep.chat_template.render(turn_messages(conv, turn, systems))
            out[conv.user, turn] = prep.encode(text)
    return out


async def simulate(
    spec: WorkloadSpec,
    prompts: dict[tuple[int, int], list[int]],
    config: KvRouterConfig,
    *,
    workers: int,
    kv_blocks: int,
    block_size: int,
    concurrency: int,
    osl: int,
    event_lag_s: float,
    seed: int,
    response_lag_s: float = 0.0,
    worker_speeds: Sequence[float] = (),
    timing: MockTiming | None = None,
) -> tuple[list[SimRequest], float]:
    """Play the workload against in-process mock engines routed by a :class:`KvPolicy`."""
    import random

    loop = asyncio.get_running_loop()
    card = ModelCard("sim", "sim", 32768, block_size)
    instances = [
        WorkerInstance(f"w{i}", "sim", "backend", "generate", f"sim.w{i}", card)
        for i in range(workers)
    ]
    policy = KvPolicy(config, random.Random(seed), clock=loop.time)
    engines: dict[str, MockEngine] = {}
    for i, inst in enumerate(instances):
        engine = MockEngine(
            MockEngineConfig(
                block_size=block_size,
                num_gpu_blocks=kv_blocks,
                vocab_size=151643,
                speedup_ratio=worker_speeds[i] if i < len(worker_speeds) else 1.0,
                timing=timing,
            )
        )

        def sink(events: list[KvEvent], iid: str = inst.instance_id) -> None:
            loop.call_later(event_lag_s, policy.kv_events, iid, events)

        engine.set_kv_event_sink(sink)
        await engine.start()
        engines[inst.instance_id] = engine
    pending = list(reversed(build_conversations(spec)))
    results: list[SimRequest] = []
    counter = 0

    async def client() -> None:
        nonlocal counter
        while pending:
            conv = pending.pop()
            for turn in range(spec.turns):
                counter += 1
                tokens = prompts[conv.user, turn]
                request = PreprocessedRequest(
                    f"r{counter}",
                    "sim",
                    tokens,
                    SamplingOptions(max_tokens=osl, ignore_eos=True, seed=counter),
                )
                t0 = loop.time()
                decision = policy.select(request, instances)
                iid = decision.instance.instance_id
                ttft = 0.0
                cached = 0
                first = True
                async for out in engines[iid].generate(request):
                    if first:
                        first = False
                        await asyncio.sleep(response_lag_s)
                        ttft = loop.time() - t0
                        cached = out.cached_tokens or 0
                        policy.prefill_done(decision)
                await asyncio.sleep(response_lag_s)
                policy.finished(decision)
                results.append(SimRequest(conv.user, turn, iid, len(tokens), cached, ttft))

    t0 = loop.time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = loop.time() - t0
    for engine in engines.values():
        await engine.stop()
    return results, wall


def summarize(variant: str, results: Sequence[SimRequest], wall: float, workers: int) -> SimResult:
    """The metrics kv_routing.py reports, from simulated requests."""
    first = [r for r in results if r.turn == 0]
    later = [r for r in results if r.turn > 0]

    def rate(rs: Sequence[SimRequest]) -> float:
        return hit_rate([r.prompt_tokens for r in rs], [r.cached_tokens for r in rs])

    per_worker = {f"w{i}": 0.0 for i in range(workers)}
    for r in results:
        per_worker[r.worker] += 1
    ttfts = [r.ttft for r in results]
    return SimResult(
        variant,
        len(results),
        wall,
        rate(results),
        rate(first),
        rate(later),
        percentile(ttfts, 0.5) * 1e3,
        percentile(ttfts, 0.99) * 1e3,
        balance(per_worker),
        per_worker,
    )


def parse_variant(text: str, base: KvRouterConfig) -> tuple[str, KvRouterConfig]:
    """``NAME:field=value,field=value`` -> (NAME, base with those KvRouterConfig fields)."""
    name, _, assignments = text.partition(":")
    fields = {f.name: f.type for f in dataclasses.fields(KvRouterConfig)}
    changes: dict[str, Any] = {}
    for item in filter(None, assignments.split(",")):
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"unknown KvRouterConfig field {key!r} (known: {', '.join(fields)})")
        current = getattr(base, key)
        if isinstance(current, bool):
            changes[key] = value.lower() in ("1", "true", "yes", "on")
        elif current is None:  # an optional weight
            changes[key] = float(value)
        else:
            changes[key] = type(current)(value)
    return name, dataclasses.replace(base, **changes)


def main() -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:field=value,... (KvRouterConfig fields); default: one 'default' variant",
    )
    ap.add_argument("--seeds", default="1", help="router RNG seeds, comma-separated")
    add_workload_arguments(ap)
    ap.add_argument("--event-lag-ms", type=float, default=2.0)
    ap.add_argument(
        "--decode-per-seq-ms",
        type=float,
        default=None,
        help="decode step time per running sequence (default: the mock's calibration, "
        "0.0167; larger makes a busier worker slower, as Dynamo's mocker with long contexts)",
    )
    ap.add_argument(
        "--worker-speeds",
        default="",
        help="comma-separated speedup ratio of each worker (default 1 each): uneven workers",
    )
    ap.add_argument(
        "--response-lag-ms",
        type=float,
        default=0.0,
        help="delay of a request's first output and of its end reaching the router (a busy frontend)",
    )
    args = ap.parse_args()
    spec = workload_spec(args)
    prompts = tokenize_workload(spec)
    speeds = [float(s) for s in args.worker_speeds.split(",") if s]
    timing = (
        None
        if args.decode_per_seq_ms is None
        else MockTiming(decode_per_seq_ms=args.decode_per_seq_ms)
    )
    base = KvRouterConfig()
    variants = [parse_variant(v, base) for v in args.variant] or [("default", base)]
    for name, config in variants:
        runs = []
        t0 = time.perf_counter()
        for seed in (int(s) for s in args.seeds.split(",")):
            loop = VirtualTimeLoop()
            try:
                results, wall = loop.run_until_complete(
                    simulate(
                        spec,
                        prompts,
                        config,
                        workers=args.workers,
                        kv_blocks=args.kv_blocks,
                        block_size=args.block_size,
                        concurrency=args.concurrency,
                        osl=args.osl,
                        event_lag_s=args.event_lag_ms / 1000.0,
                        seed=seed,
                        response_lag_s=args.response_lag_ms / 1000.0,
                        worker_speeds=speeds,
                        timing=timing,
                    )
                )
            finally:
                loop.close()
            runs.append(summarize(name, results, wall, args.workers))
        cpu = time.perf_counter() - t0

        def med(key: str, rs: list[SimResult] = runs) -> float:
            return statistics.median(float(getattr(r, key)) for r in rs)

        spread = "/".join(f"{r.hit_rate:.1%}" for r in runs)
        balances = "/".join(f"{r.balance:.3f}" for r in runs)
        per_worker = ";".join(
            "/".join(f"{v:.0f}" for v in r.per_worker_requests.values()) for r in runs
        )
        print(
            f"{name:14s} hit {med('hit_rate'):6.1%} [{spread}] (first "
            f"{med('hit_rate_first_turn'):6.1%}, later {med('hit_rate_later_turns'):6.1%})  "
            f"TTFT p50 {med('ttft_p50_ms'):6.1f} p99 {med('ttft_p99_ms'):6.1f} ms  "
            f"balance {med('balance'):5.3f} [{balances}] ({per_worker})  sim {med('wall_s'):5.1f} s  ({cpu:.1f} s cpu)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
