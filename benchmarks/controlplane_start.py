"""Warm start of the local control plane (what `dgd dev up` and the integration fixture pay).

For each run: a fresh state directory, then `ControlPlane.start()` with its milestones
(certificates, etcd healthy, kube-apiserver /readyz, simulated nodes Ready, controllers running)
and the stop time. The baseline in the same run is etcd alone becoming healthy, so the ratio
"API ready / etcd ready" is comparable across machines of different speed. The binary cache
check (`binaries.ensure()` when warm) is timed too.

    .venv/bin/python benchmarks/controlplane_start.py [--runs 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dgd_operator.dev import binaries
from dgd_operator.dev.controlplane import ControlPlane

MILESTONES = (
    "certificates",
    "etcd_healthy",
    "apiserver_ready",
    "crds_established",
    "nodes_ready",
    "controllers_ready",
)
TARGET_SECONDS = 15.0


def one_run(bins: binaries.KubeBinaries, nodes: int, gpus: int) -> dict[str, float]:
    """Start and stop one control plane; return its milestone times in seconds."""
    with tempfile.TemporaryDirectory(prefix="dgd-bench-cp-") as tmp:
        plane = ControlPlane(Path(tmp), binaries=bins, nodes=nodes, gpus_per_node=gpus)
        began = time.monotonic()
        plane.start()
        total = time.monotonic() - began
        stop_began = time.monotonic()
        leftovers = plane.stop()
        stop = time.monotonic() - stop_began
        if leftovers:
            raise SystemExit(f"processes left running: {leftovers}")
    return {**plane.timings, "total_start": total, "stop": stop}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and optionally write) the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write results as JSON")
    args = parser.parse_args(argv)

    check_began = time.monotonic()
    bins = binaries.find()
    cache_check = time.monotonic() - check_began
    if bins is None:
        print("binaries not built: run `make kube-bins` first", file=sys.stderr)
        return 1

    runs = [one_run(bins, args.nodes, args.gpus_per_node) for _ in range(args.runs)]
    keys = [*MILESTONES, "total_start", "stop"]
    median = {k: statistics.median(r[k] for r in runs) for k in keys}
    api_ratio = median["apiserver_ready"] / median["etcd_healthy"]
    print(
        f"control plane warm start, {args.runs} runs, {args.nodes} nodes x {args.gpus_per_node} GPUs"
    )
    print(f"  binary cache check (warm): {cache_check * 1000:.1f} ms")
    for key in keys:
        values = ", ".join(f"{r[key]:.2f}" for r in runs)
        print(f"  {key:<18} median {median[key]:6.2f} s   ({values})")
    print(f"  API ready / etcd ready (baseline) = {api_ratio:.1f}x")
    verdict = "OK" if median["total_start"] < TARGET_SECONDS else "SLOWER THAN TARGET"
    print(f"  target: ready (nodes + controllers) < {TARGET_SECONDS:g} s -> {verdict}")
    if args.json:
        result: dict[str, Any] = {
            "benchmark": "controlplane_start",
            "kubernetes_version": bins.version,
            "runs": runs,
            "median": median,
            "binary_cache_check_s": cache_check,
            "api_ready_over_etcd_ready": api_ratio,
            "target_s": TARGET_SECONDS,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
