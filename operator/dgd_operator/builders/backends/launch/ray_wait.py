"""Ray leader step between `ray start --head` and the engine: wait for the whole group.

Usage (in the leader pod, as a script from the launch-scripts ConfigMap, next to
`placement.py`)::

    ray-wait.py --nodes N --gpus-per-node G --timeout S [--address ADDR] [--no-placement-check]

Returns 0 once N alive nodes each expose at least G GPUs and (unless disabled) a STRICT_SPREAD
placement group of one `{"GPU": G}` bundle per node was placed and released again. On timeout
it prints which nodes joined with how many GPUs and exits 1, so the pod's log says what is
missing instead of the engine waiting forever for GPUs that never arrive.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


class ClusterNotReadyError(TimeoutError):
    """The cluster did not reach the wanted node/GPU count before the deadline."""


@dataclass(frozen=True)
class ClusterCount:
    """What has joined: alive nodes with enough GPUs, all alive nodes, and their GPUs."""

    ready_nodes: int
    alive_nodes: int
    total_gpus: float
    node_gpus: tuple[tuple[str, float], ...]


def count_nodes(nodes: Sequence[dict[str, Any]], gpus_per_node: float) -> ClusterCount:
    """Summarise `ray.nodes()` output against the per-node GPU requirement."""
    alive = [n for n in nodes if n.get("Alive")]
    node_gpus = tuple(
        (
            str(n.get("NodeManagerAddress", n.get("NodeID", "?"))),
            float(n.get("Resources", {}).get("GPU", 0.0)),
        )
        for n in alive
    )
    ready = sum(1 for _, gpus in node_gpus if gpus >= gpus_per_node)
    return ClusterCount(ready, len(alive), sum(g for _, g in node_gpus), node_gpus)


def describe(count: ClusterCount, nodes: int, gpus_per_node: float) -> str:
    """Human summary used in progress and timeout messages."""
    joined = ", ".join(f"{addr} ({gpus:g} GPU)" for addr, gpus in count.node_gpus) or "none"
    return (
        f"{count.ready_nodes}/{nodes} nodes with >= {gpus_per_node:g} GPU(s) joined "
        f"({count.alive_nodes} alive, {count.total_gpus:g}/{nodes * gpus_per_node:g} GPUs); joined: {joined}"
    )


def wait_for_nodes(
    nodes: int,
    gpus_per_node: float,
    *,
    timeout: float,
    list_nodes: Callable[[], Sequence[dict[str, Any]]] | None = None,
    interval: float = 1.0,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
) -> ClusterCount:
    """Block until `nodes` alive nodes each have >= `gpus_per_node` GPUs; raise on timeout."""
    if list_nodes is None:
        import ray

        ray_api: Any = ray  # ray.nodes is untyped
        list_nodes = ray_api.nodes
    start = time.monotonic()
    last_report = start
    while True:
        count = count_nodes(list_nodes(), gpus_per_node)
        elapsed = time.monotonic() - start
        if count.ready_nodes >= nodes:
            log(
                f"dgd: Ray cluster ready after {elapsed:.1f}s: {describe(count, nodes, gpus_per_node)}"
            )
            return count
        if elapsed >= timeout:
            raise ClusterNotReadyError(
                f"dgd: timed out after {timeout:g}s waiting for the Ray cluster: "
                f"{describe(count, nodes, gpus_per_node)}. "
                f"{nodes - count.ready_nodes} node(s) missing; check the group's worker pods"
            )
        if time.monotonic() - last_report >= 15:
            log(
                f"dgd: waiting for Ray nodes ({elapsed:.0f}s): {describe(count, nodes, gpus_per_node)}"
            )
            last_report = time.monotonic()
        time.sleep(interval)


def _placement_module() -> Any:
    # Imported as a module: its sibling in the same package. Run as a script (the ConfigMap
    # layout): the copy next to this file.
    if __package__:
        return importlib.import_module(f"{__package__}.placement")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    return importlib.import_module("placement")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description="Wait until all nodes of a Ray group joined.")
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--gpus-per-node", type=float, required=True)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--address", default="auto", help="Ray address (default: the local head)")
    parser.add_argument("--no-placement-check", action="store_true")
    args = parser.parse_args(argv)

    import ray

    ray.init(address=args.address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        start = time.monotonic()
        wait_for_nodes(args.nodes, args.gpus_per_node, timeout=args.timeout)
        if not args.no_placement_check:
            placement = _placement_module()
            remaining = max(args.timeout - (time.monotonic() - start), 1.0)
            group = placement.reserve_node_gang(args.nodes, args.gpus_per_node, timeout=remaining)
            print(
                f"dgd: gang of {args.nodes} node(s) x {args.gpus_per_node:g} GPU placed (STRICT_SPREAD)",
                flush=True,
            )
            placement.release(group)
    except TimeoutError as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 1
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
