"""Gang placement check on a Ray cluster: one bundle per node, holding that node's GPUs.

`reserve_node_gang` creates a STRICT_SPREAD placement group of `nodes` bundles of
`{"GPU": gpus_per_node}` (so every bundle lands on a different node and takes all of its
GPUs) and waits until Ray reports it placed. The Ray leader runs this before starting the
engine: success proves every node of the group is in the cluster with its GPUs free, so the
engine's own placement (vLLM's Ray executor) cannot wait forever for missing GPUs.

Standalone on purpose (stdlib + ray only): it is shipped next to `ray_wait.py` in the
launch-scripts ConfigMap.
"""

from __future__ import annotations

from typing import Any


class GangNotPlaceableError(TimeoutError):
    """The placement group was not placed before the deadline."""


def gang_bundles(nodes: int, gpus_per_node: float) -> list[dict[str, float]]:
    """One bundle per node with all its GPUs (a CPU share when the pods declare no GPU)."""
    if nodes < 1:
        raise ValueError("nodes must be >= 1")
    bundle = {"GPU": float(gpus_per_node)} if gpus_per_node > 0 else {"CPU": 0.01}
    return [dict(bundle) for _ in range(nodes)]


def reserve_node_gang(nodes: int, gpus_per_node: float, *, timeout: float, name: str = "") -> Any:
    """Create the STRICT_SPREAD gang placement group and wait until it is placed.

    Returns the placement group (the caller removes it with `release`). Raises
    `GangNotPlaceableError` with the cluster's free resources when it is not placed in `timeout`.
    Requires `ray.init()` to have connected to the cluster.
    """
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    ray_api: Any = ray  # parts of ray's API are untyped

    bundles = gang_bundles(nodes, gpus_per_node)
    group = placement_group(bundles, strategy="STRICT_SPREAD", name=name)
    if group.wait(timeout_seconds=max(timeout, 0.001)):
        return group
    remove_placement_group(group)
    available = ray_api.available_resources()
    alive = [n for n in ray_api.nodes() if n.get("Alive")]
    raise GangNotPlaceableError(
        f"dgd: the placement group of {nodes} bundle(s) {bundles[0]} with STRICT_SPREAD "
        f"(one per node) was not placed within {timeout:g}s: the cluster has {len(alive)} "
        f"alive node(s) and {available.get('GPU', 0):g} free GPU(s)"
    )


def bundle_nodes(group: Any) -> list[str]:
    """Node IDs of a placed group's bundles, in bundle order."""
    from ray.util import placement_group_table

    table = placement_group_table(group)
    mapping: dict[int, str] = table.get("bundles_to_node_id", {})
    return [mapping[index] for index in sorted(mapping)]


def release(group: Any) -> None:
    """Remove the placement group, returning its resources to the cluster."""
    from ray.util.placement_group import remove_placement_group

    remove_placement_group(group)
