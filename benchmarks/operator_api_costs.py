"""What the operator's own API traffic costs the control plane, one kind of request at a time.

`operator_scale.py` compares the operator with a plain client creating the same children, but
on 2 saturated cores every component's CPU grows with the phase's length, so its per-process
deltas cannot say which of the operator's requests costs what. Here each kind is measured
alone, on a quiet local control plane, as CPU seconds of kube-apiserver, etcd, the DGD
webhook and kube-controller-manager from the start of a burst until the cluster is idle again:

1. ``graphs``: N DGDs created by a plain client (``--dgd-api``, v1beta1 by default), no children;
2. ``status-pending``: one status server-side apply per graph, the operator's first status;
3. ``status-ready``: a second one, the Ready status (what the operator writes on readiness);
4. ``events``: one Event per graph (the operator's `Created`);
5. ``children``: the graphs' children (11 per graph), created by a plain client as the floor of
   `operator_scale.py` creates them, pods and all, in a namespace of their own;
6. ``children+watches``: the same in a fresh namespace while the operator's informer streams
   (``handlers.Watches``: its kinds and label selectors, read and dropped) are open: the
   difference is what the operator's watches cost the control plane.

Requests go 8 at a time (the operator's default worker count). Costs are printed in ms of CPU
per graph. Not a test: nothing is asserted.

    .venv/bin/python benchmarks/operator_api_costs.py [--dgds 300] [--dgd-api v1alpha1] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from dgd_operator.api.conversion import status_to_v1beta1
from dgd_operator.api.validation import parse_dgd
from dgd_operator.builders.graph import build_graph
from dgd_operator.controllerkit.informer import WatchingKubeAPI
from dgd_operator.dev import binaries
from dgd_operator.dev.controlplane import ControlPlane
from dgd_operator.handlers import Watches
from dgd_operator.reconcile.controller import Controller
from dgd_operator.reconcile.readiness import graph_readiness
from dgd_operator.reconcile.status import ObservedGraph, calculate_status, dump_status, parse_status
from dgd_operator.reconcile.view import IndexedClusterView
from dgd_operator.settings import OperatorSettings

if __package__:  # imported as benchmarks.operator_api_costs (the unit tests)
    from benchmarks import operator_scale as scale
else:  # run as a script: benchmarks/ is on sys.path
    import operator_scale as scale

CONCURRENCY = 8
IDLE_MARGIN_CORES = 0.05  # idle: within this many cores of the baseline, over a second
BASELINE_SECONDS = 10.0
WATCHED_PROCESSES = ("kube-apiserver", "etcd", "dgd-webhook", "kube-controller-manager")
NOW = "2026-01-01T00:00:00Z"


def graph_status(dgd: Mapping[str, Any], namespace: str, *, ready: bool) -> dict[str, Any]:
    """The status the operator writes for `dgd`: just created (no child observed) or Ready."""
    desired = build_graph(parse_dgd(dgd), namespace, OperatorSettings().to_build_options())
    live: dict[tuple[str, str], Mapping[str, Any]] = {}
    for obj in desired:
        status: dict[str, Any] = {}
        if ready and obj["kind"] == "Deployment":
            status = {
                "observedGeneration": 1,
                "replicas": 1,
                "updatedReplicas": 1,
                "readyReplicas": 1,
                "availableReplicas": 1,
                "conditions": [{"type": "Available", "status": "True"}],
            }
        live[(obj["kind"], obj["metadata"]["name"])] = {
            **obj,
            "metadata": {**obj["metadata"], "generation": 1},
            "status": status,
        }
    readiness = graph_readiness(desired, live, None, [])
    observed = ObservedGraph(
        generation=1, readiness=readiness, groups={}, group_failures=(), restart=None
    )
    return status_to_v1beta1(dump_status(calculate_status(parse_status(None), observed, now=NOW)))


async def gather_limited(jobs: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> None:
    """Run `jobs`, `limit` at a time."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            await job()

    await asyncio.gather(*(one(job) for job in jobs))


async def idle_rate(pids: Mapping[str, int]) -> dict[str, float]:
    """Cores each process uses with nothing happening (node heartbeats, leases, resyncs)."""
    before = scale.cpu_snapshot(pids)
    await asyncio.sleep(BASELINE_SECONDS)
    spent = scale.cpu_delta(before, scale.cpu_snapshot(pids))
    return {name: spent.get(name, 0.0) / BASELINE_SECONDS for name in pids}


async def until_idle(
    pids: Mapping[str, int], baseline: Mapping[str, float], quiet_seconds: float = 3.0
) -> None:
    """Wait until the control plane has been back at its idle rate for `quiet_seconds`."""
    quiet_since: float | None = None
    before = scale.cpu_snapshot(pids)
    idle = sum(baseline.values()) + IDLE_MARGIN_CORES
    while True:
        await asyncio.sleep(1.0)
        after = scale.cpu_snapshot(pids)
        used = sum(after[name] - before[name] for name in pids)
        before = after
        now = time.monotonic()
        if used < idle:
            quiet_since = quiet_since or now
            if now - quiet_since >= quiet_seconds:
                return
        else:
            quiet_since = None


async def measure(
    name: str,
    work: Callable[[], Awaitable[None]],
    pids: Mapping[str, int],
    baseline: Mapping[str, float],
    graphs: int,
    results: dict[str, dict[str, float]],
) -> None:
    """CPU per graph of every watched process (its idle rate taken out), from the start of
    `work` until the control plane is idle again."""
    await until_idle(pids, baseline)
    before = scale.cpu_snapshot(pids)
    began = time.monotonic()
    await work()
    busy = time.monotonic() - began
    await until_idle(pids, baseline)
    elapsed = time.monotonic() - began
    spent = scale.cpu_delta(before, scale.cpu_snapshot(pids))
    per_graph = {
        proc: round(1000 * (spent.get(proc, 0.0) - baseline[proc] * elapsed) / graphs, 2)
        for proc in pids
    }
    results[name] = {**per_graph, "requests_s": round(busy, 2)}
    total = sum(per_graph.values())
    print(
        f"  {name:18} {total:7.1f} ms/graph  "
        + "  ".join(f"{proc} {ms:.1f}" for proc, ms in per_graph.items())
        + f"  (requests took {busy:.1f}s)",
        flush=True,
    )


async def open_operator_watches(api: scale.Api, namespace: str) -> list[asyncio.Task[None]]:
    """The operator's informer streams for `namespace` (as `handlers.Watches` builds them with
    default settings), each read to the end and dropped."""
    plan = Watches(Controller(OperatorSettings()), IndexedClusterView())
    informers = plan.build(cast(WatchingKubeAPI, None), [namespace])  # only their paths are read

    async def drain(path: str, selectors: Mapping[str, str]) -> None:
        async for _ in api.watch(path, selectors):
            pass

    return [asyncio.create_task(drain(i.path, i.selectors)) for i in informers]


async def run(
    args: argparse.Namespace, kubeconfig: Path, pids: Mapping[str, int]
) -> dict[str, Any]:
    """Every burst in order; CPU ms per graph per process."""
    api = scale.Api(scale.credentials_from_kubeconfig(kubeconfig), limit=64)
    names = [f"cost-{i:04d}" for i in range(args.dgds)]
    results: dict[str, dict[str, float]] = {}
    api_version = scale.DGD_APIS[args.dgd_api]
    baseline = await idle_rate(pids)
    print(
        "idle: " + ", ".join(f"{name} {cores:.3f} cores" for name, cores in baseline.items()),
        flush=True,
    )
    try:
        namespace = "cost-graphs"
        await scale.create_namespace(api, namespace)
        dgd_path = f"/apis/{api_version}/namespaces/{namespace}/dynamographdeployments"
        bodies = {name: scale.bench_dgd(name, namespace, args.dgd_api) for name in names}

        async def graphs() -> None:
            await gather_limited(
                [lambda b=body: api.request("POST", dgd_path, body=b) for body in bodies.values()],
                CONCURRENCY,
            )

        async def statuses(ready: bool) -> None:
            beta = (
                f"/apis/{scale.DGD_APIS['v1beta1']}/namespaces/{namespace}/dynamographdeployments"
            )

            async def apply(name: str) -> None:
                body = {
                    "apiVersion": scale.DGD_APIS["v1beta1"],
                    "kind": scale.DGD_KIND,
                    "metadata": {"name": name, "namespace": namespace},
                    "status": graph_status(bodies[name], namespace, ready=ready),
                }
                async with api.session.patch(
                    f"{beta}/{name}/status",
                    params={"fieldManager": "dgd-operator", "force": "true"},
                    data=json.dumps(body),
                    headers={"Content-Type": "application/apply-patch+yaml"},
                ) as resp:
                    if resp.status >= 400:
                        raise SystemExit(f"status apply {name}: {resp.status} {await resp.text()}")

            await gather_limited([lambda n=name: apply(n) for name in names], CONCURRENCY)

        async def events() -> None:
            def event(name: str) -> dict[str, Any]:
                return {
                    "metadata": {"generateName": f"{name}.", "namespace": namespace},
                    "involvedObject": {
                        "apiVersion": api_version,
                        "kind": scale.DGD_KIND,
                        "name": name,
                        "namespace": namespace,
                    },
                    "type": "Normal",
                    "reason": "Created",
                    "message": "created 11 children",
                    "source": {"component": "dgd-operator"},
                    "firstTimestamp": NOW,
                    "lastTimestamp": NOW,
                    "count": 1,
                }

            path = f"/api/v1/namespaces/{namespace}/events"
            await gather_limited(
                [lambda n=name: api.request("POST", path, body=event(n)) for name in names],
                CONCURRENCY,
            )

        print(f"operator_api_costs: {args.dgds} graphs written at {args.dgd_api}", flush=True)
        await measure("graphs", graphs, pids, baseline, args.dgds, results)
        await measure("status-pending", lambda: statuses(False), pids, baseline, args.dgds, results)
        await measure("status-ready", lambda: statuses(True), pids, baseline, args.dgds, results)
        await measure("events", events, pids, baseline, args.dgds, results)
        await scale.delete_namespace(api, namespace, timeout=600)

        for name, watched in (("children", False), ("children+watches", True)):
            child_ns = f"cost-{'watched' if watched else 'plain'}"
            await scale.create_namespace(api, child_ns)
            options = OperatorSettings().to_build_options()
            children = [
                child
                for graph_name in names
                for child in build_graph(
                    parse_dgd(scale.bench_dgd(graph_name, child_ns)), child_ns, options
                )
            ]
            tasks = await open_operator_watches(api, child_ns) if watched else []
            await asyncio.sleep(1.0)

            async def create_children(objs: list[dict[str, Any]] = children) -> None:
                await gather_limited([lambda c=c: api.create(c) for c in objs], CONCURRENCY)

            await measure(name, create_children, pids, baseline, args.dgds, results)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await scale.delete_namespace(api, child_ns, timeout=900)
    finally:
        await api.close()
    plain, watched_run = results["children"], results["children+watches"]
    watch_cost = {
        proc: round(watched_run[proc] - plain[proc], 2)
        for proc in WATCHED_PROCESSES
        if proc in plain
    }
    print(f"  operator watches (children+watches - children): {watch_cost}", flush=True)
    return {
        "benchmark": "operator_api_costs",
        "dgds": args.dgds,
        "dgd_api": args.dgd_api,
        "ms_cpu_per_graph": results,
        "watch_cost_ms_per_graph": watch_cost,
    }


def main(argv: list[str] | None = None) -> int:
    """Start a local control plane, run every burst, print (and save) the costs."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--dgds", type=int, default=300, help="graphs per burst (default 300)")
    parser.add_argument("--dgd-api", choices=sorted(scale.DGD_APIS), default="v1beta1")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    args = parser.parse_args(argv)
    bins = binaries.find()
    if bins is None:
        print("Kubernetes binaries are not built: run `make kube-bins` first", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="dgd-bench-costs-") as tmp:
        nodes, gpus = scale.cluster_shape(args.dgds)
        plane = ControlPlane(
            Path(tmp) / "cp", binaries=bins, nodes=nodes, gpus_per_node=gpus, kubelet="process"
        )
        plane.start(timeout=180)
        try:
            plane.install_crds()
            pids = {
                proc.name: proc.pid for proc in plane.processes() if proc.name in WATCHED_PROCESSES
            }
            result = asyncio.run(run(args, plane.kubeconfig, pids))
        finally:
            plane.stop()
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
