"""The most any frontend could get out of the mock engine: a closed loop straight on it.

No HTTP, no NATS, no tokenizer, no worker process: `concurrency` coroutines call the mock
engine's ``generate`` in-process with the load of ``runtime_vs_dynamo.py`` (113 prompt tokens,
128 output tokens, ignore_eos), one request after another. Their req/s is the ceiling the
simulated step times allow at that concurrency and speedup: a frontend in front of the same
engine can only add time to each request. Reading it next to runtime_vs_dynamo's figures says
how much of a gap is the engine's (the same model for us and, by calibration, Dynamo's mocker)
and how much the serving path's.

    python benchmarks/mock_engine_ceiling.py --speedup 10 --concurrency 64 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "runtime"))

from dgd_runtime.engines.mock.engine import MockEngine, MockEngineConfig  # noqa: E402
from dgd_runtime.protocol import PreprocessedRequest, SamplingOptions  # noqa: E402

# The prompt length of runtime_vs_dynamo's load: loadgen's --isl-words 96 after the chat template.
ISL_TOKENS = 113


async def closed_loop(
    speedup: float, concurrency: int, seconds: float, isl: int, osl: int, jitter_ms: float
) -> dict[str, float]:
    """Run the loop for ``seconds``; req/s, TTFT p50 and mean inter-token time."""
    engine = MockEngine(MockEngineConfig(speedup_ratio=speedup))
    await engine.start()
    rng = random.Random(1)
    done = 0
    ttfts: list[float] = []
    itls: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            if jitter_ms:
                # A serving path's variable delay between requests (it desynchronizes them).
                await asyncio.sleep(rng.uniform(0, jitter_ms) / 1e3)
            tokens = [rng.randrange(1000, 30000) for _ in range(isl)]
            request = PreprocessedRequest(
                uuid.uuid4().hex, "m", tokens, SamplingOptions(max_tokens=osl, ignore_eos=True)
            )
            t0 = time.perf_counter()
            first = last = 0.0
            n = 0
            async for out in engine.generate(request):
                if out.token_ids:
                    last = time.perf_counter()
                    first = first or last
                    n += len(out.token_ids)
                if out.finish_reason is not None:
                    break
            done += 1
            ttfts.append(first - t0)
            if n > 1:
                itls.append((last - first) / (n - 1))

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    await engine.stop()
    return {
        "req_s": done / wall,
        "ttft_p50_ms": statistics.median(ttfts) * 1e3,
        "itl_mean_ms": statistics.fmean(itls) * 1e3,
    }


def main() -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--speedup", type=float, default=10.0)
    ap.add_argument("--concurrency", default="64", help="comma-separated, e.g. 64,256")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--isl", type=int, default=ISL_TOKENS, help="prompt tokens")
    ap.add_argument("--osl", type=int, default=128, help="output tokens")
    ap.add_argument(
        "--jitter-ms",
        default="0",
        help="comma-separated uniform random waits before each request (0: the clients stay "
        "in lockstep, the engine prefills them in one batch: the best case)",
    )
    args = ap.parse_args()
    import uvloop  # a dependency of the runtime

    for jitter in (float(j) for j in args.jitter_ms.split(",")):
        for c in (int(x) for x in args.concurrency.split(",")):
            r = uvloop.run(closed_loop(args.speedup, c, args.seconds, args.isl, args.osl, jitter))
            print(
                f"speedup {args.speedup:g} c={c} jitter {jitter:g} ms: {r['req_s']:.1f} req/s, "
                f"TTFT p50 {r['ttft_p50_ms']:.1f} ms, ITL {r['itl_mean_ms']:.3f} ms",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
