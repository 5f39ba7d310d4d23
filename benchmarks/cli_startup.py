"""How fast the `dgd` CLI answers, against a bare Python start in the same run.

`dgd --help` must answer in under 0.3 s and never import kopf or the Kubernetes client; this
measures it (median of N runs) next to `python -c pass`, the floor no Python CLI can beat, and
reports which heavy modules the help path imported.

    python benchmarks/cli_startup.py [--runs 15] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY_MODULES = ("kopf", "kubernetes", "kubernetes_validate", "aiohttp", "pydantic")
TARGET_SECONDS = 0.3


def _time(cmd: list[str], runs: int) -> float:
    """Median wall seconds of `cmd` over `runs` runs (after one warm-up run)."""
    subprocess.run(cmd, check=True, capture_output=True)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _imported_by_help() -> list[str]:
    """Heavy modules present in sys.modules after building and printing the help."""
    probe = (
        "import sys, contextlib, io\n"
        "from dgd_operator.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    return [m for m in out.stdout.strip().split(",") if m]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a table and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command (default 15)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    floor = _time([sys.executable, "-c", "pass"], args.runs)
    help_s = _time([sys.executable, "-m", "dgd_operator", "--help"], args.runs)
    validate_help_s = _time([sys.executable, "-m", "dgd_operator", "validate", "--help"], args.runs)
    heavy = _imported_by_help()
    result = {
        "python_floor_s": round(floor, 4),
        "dgd_help_s": round(help_s, 4),
        "dgd_validate_help_s": round(validate_help_s, 4),
        "ratio_to_floor": round(help_s / floor, 2),
        "heavy_modules_imported": heavy,
        "target_s": TARGET_SECONDS,
        "pass": help_s < TARGET_SECONDS and not {"kopf", "kubernetes"} & set(heavy),
    }
    print(f"{'python -c pass':<24}{floor * 1000:8.1f} ms")
    print(f"{'dgd --help':<24}{help_s * 1000:8.1f} ms  ({result['ratio_to_floor']}x the floor)")
    print(f"{'dgd validate --help':<24}{validate_help_s * 1000:8.1f} ms")
    print(f"heavy modules imported by --help: {', '.join(heavy) or 'none'}")
    print(f"target < {TARGET_SECONDS * 1000:.0f} ms: {'PASS' if result['pass'] else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
