"""CPU of a graph's first reconcile, in process: what an operator start costs per graph.

After an operator (re)start, or when a graph is created, its memos are empty: the reconcile
validates the stored spec (conversion included), builds every child and hashes it. That CPU
competes with kube-apiserver for the same cores at scale (issue 16), so it is measured here
without any API server:

1. every DGD of ``recipes/*.yaml`` and ``tests/fixtures/graphs/*.yaml`` (plus the 4-service
   graph of ``operator_scale.py``) is stored as the API server stores it (v1beta1, with uid,
   generation, resourceVersion);
2. one controller converges them against an in-memory API (creates and applies answer with a
   ready status), so the cache holds every child and each graph's status;
3. ``--rounds`` times, a *fresh* controller (empty memos, as after a restart) reconciles every
   graph once: the converged path, which must write nothing. CPU time (``process_time``) per
   graph is reported, the median round and the spread; ``--profile OUT`` writes a cProfile of
   the rounds and prints the top functions.

``--memory`` measures what the watch cache holds instead: the bytes Python allocates
(tracemalloc) for 1,000 cached children as the informers deliver them (server-side fields
added, ``managedFields`` included), after ``handlers.slim`` and as the cache keeps them
(``view.cached_child``: no pod template specs, no ConfigMap data).

    .venv/bin/python benchmarks/reconcile_cpu.py [--rounds 5] [--only LABEL --copies 30]
        [--profile OUT]
    .venv/bin/python benchmarks/reconcile_cpu.py --memory

Single-threaded and short (a few seconds); not a test, timings are never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import cProfile
import datetime
import gc
import json
import pstats
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from dgd_operator.api.constants import DGD_KIND, GROUP_VERSION_V1BETA1, LABEL_GRAPH
from dgd_operator.api.conversion import convert
from dgd_operator.reconcile.controller import Controller
from dgd_operator.reconcile.state import Key
from dgd_operator.reconcile.view import SharedKey
from dgd_operator.settings import OperatorSettings

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

Manifest = dict[str, Any]
ObjKey = tuple[str, str, str]


def fixture_graphs() -> list[tuple[str, Manifest]]:
    """(label, v1alpha1 DGD) for every graph of the recipes, the test graphs and the benchmark."""
    found: list[tuple[str, Manifest]] = []
    paths = sorted((REPO / "recipes").glob("*.yaml")) + sorted(
        (REPO / "tests" / "fixtures" / "graphs").glob("*.yaml")
    )
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("kind") == DGD_KIND:
                found.append((f"{path.parent.name}/{path.stem}", doc))
    sys.path.insert(0, str(Path(__file__).parent))
    from operator_scale import bench_dgd  # a sibling script, not a package

    found.append(("operator_scale/bench_dgd", bench_dgd("bench", NAMESPACE)))
    return found


def stored(doc: Manifest, index: int) -> Manifest:
    """`doc` as the API server stores it: v1beta1, in our namespace, with server metadata."""
    doc = copy.deepcopy(doc)
    meta = doc.setdefault("metadata", {})
    meta["name"] = f"g{index:03d}-{meta.get('name', 'graph')}"[:50]
    meta.update(
        namespace=NAMESPACE,
        uid=f"uid-dgd-{index}",
        generation=1,
        resourceVersion="1",
        creationTimestamp="2026-01-01T00:00:00Z",
    )
    return convert(doc, GROUP_VERSION_V1BETA1)


def merge_patch(target: Manifest, patch: Mapping[str, Any]) -> None:
    """Apply a JSON merge patch (RFC 7386) to `target` in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class MemoryAPI:
    """The API server, in memory: objects by (apiVersion, kind, name), writes counted."""

    def __init__(self, dgds: dict[str, Manifest]) -> None:
        self.dgds = dgds
        self.objects: dict[ObjKey, Manifest] = {}
        self.writes = 0
        self._uid = 0

    def _live(self, manifest: Manifest) -> Manifest:
        key = (manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"])
        live = copy.deepcopy(manifest)
        old = self.objects.get(key)
        self._uid += 1
        meta = live["metadata"]
        meta["uid"] = old["metadata"]["uid"] if old else f"uid-{self._uid}"
        meta["generation"] = (old["metadata"]["generation"] + 1) if old else 1
        meta["resourceVersion"] = str(self._uid)
        meta["creationTimestamp"] = "2026-01-01T00:00:00Z"
        spec = live.get("spec") or {}
        replicas = spec.get("replicas", 1) if isinstance(spec, dict) else 1
        live["status"] = {
            "observedGeneration": meta["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [{"type": "Available", "status": "True"}],
        }
        self.objects[key] = live
        return live

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> Manifest | None:
        return self.objects.get((api_version, kind, name))

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str | None = None,
    ) -> list[Manifest]:
        return [o for k, o in self.objects.items() if k[:2] == (api_version, kind)]

    async def discover(self, path: str) -> Manifest | None:
        return None

    async def apply(
        self, manifest: Manifest, *, subresource: str | None = None, force: bool = True
    ) -> Manifest:
        self.writes += 1
        if subresource == "status":
            body = self.dgds[manifest["metadata"]["name"]]
            body["status"] = copy.deepcopy(manifest.get("status"))
            return body
        return self._live(manifest)

    async def create(self, manifest: Manifest) -> Manifest:
        if manifest["kind"] == "Event":
            return manifest  # not counted: the benchmark counts object and status writes
        self.writes += 1
        return self._live(manifest)

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> Manifest:
        self.writes += 1
        live = self.objects.get((api_version, kind, name))
        if live is None:
            return {}
        merge_patch(live, patch)
        return live

    async def json_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        operations: Sequence[Mapping[str, Any]],
    ) -> Manifest:
        self.writes += 1
        return self.objects.get((api_version, kind, name)) or {}

    async def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        uid: str | None = None,
        propagation: str = "Background",
    ) -> bool:
        self.writes += 1
        return self.objects.pop((api_version, kind, name), None) is not None

    async def close(self) -> None:
        return None


class MemoryView:
    """The watch cache over `MemoryAPI` (children found by the graph label)."""

    def __init__(self, api: MemoryAPI) -> None:
        self.api = api
        self.by_graph: dict[str, list[Manifest]] = {}
        self.shared: set[SharedKey] = set()

    def sync(self) -> None:
        """Index the API's objects by graph, as the informers would after their listing."""
        self.by_graph = {}
        self.shared = set()
        for obj in self.api.objects.values():
            graph = ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_GRAPH)
            if graph:
                self.by_graph.setdefault(graph, []).append(obj)
            else:
                self.shared.add((obj["kind"], obj["metadata"]["name"]))

    def dgd(self, key: Key) -> Mapping[str, Any] | None:
        return self.api.dgds.get(key[1])

    def children(self, key: Key) -> list[Mapping[str, Any]]:
        return list(self.by_graph.get(key[1], ()))

    def shared_objects(self, namespace: str) -> set[SharedKey]:
        return set(self.shared)

    def pull_secrets(self, namespace: str) -> dict[str, tuple[str, ...]]:
        return {}

    def group_pods(self, key: Key) -> list[Mapping[str, Any]]:
        return []

    def graph_pods(self, key: Key) -> list[Mapping[str, Any]]:
        return []

    def object_counts(self) -> dict[str, int]:
        return {DGD_KIND: len(self.api.dgds)}


def controller(api: MemoryAPI, view: MemoryView) -> Controller:
    """A controller with empty memos over the in-memory API, started without workers."""
    ctl = Controller(OperatorSettings(), wall_clock=lambda: NOW)
    ctl.client = api
    ctl.bind_view(view)
    return ctl


async def reconcile_all(ctl: Controller, keys: list[Key]) -> None:
    """Reconcile every graph once, in order (the workers' job, without the queue)."""
    for key in keys:
        await ctl.reconcile(key)


def converged(graphs: list[tuple[str, Manifest]]) -> tuple[MemoryAPI, MemoryView, list[Key]]:
    """Every valid graph stored and converged (children exist, status written)."""
    dgds: dict[str, Manifest] = {}
    for index, (_label, doc) in enumerate(graphs):
        body = stored(doc, index)
        dgds[body["metadata"]["name"]] = body
    api = MemoryAPI(dgds)
    view = MemoryView(api)
    keys: list[Key] = [(NAMESPACE, name) for name in dgds]
    for _ in range(3):  # create, then status and anything that follows from it
        asyncio.run(reconcile_all(controller(api, view), keys))
        view.sync()
    failed = [n for n, b in dgds.items() if (b.get("status") or {}).get("state") == "failed"]
    if failed:
        print(f"left out (rejected): {', '.join(failed)}", file=sys.stderr)
        for name in failed:
            del dgds[name]
        keys = [(NAMESPACE, name) for name in dgds]
    return api, view, keys


def measure(rounds: int, profile: Path | None, only: str = "", copies: int = 1) -> dict[str, Any]:
    """CPU ms per graph of the first reconcile after a start, over `rounds` fresh controllers
    (`only`: the graphs whose label contains it, each stored `copies` times)."""
    api, view, keys = converged([g for g in fixture_graphs() if only in g[0]] * copies)
    api.writes = 0
    per_graph: list[float] = []
    profiler = cProfile.Profile(time.process_time) if profile else None
    for _ in range(rounds):
        ctl = controller(api, view)
        gc.collect()
        started = time.process_time()
        if profiler is not None:
            profiler.enable()
        asyncio.run(reconcile_all(ctl, keys))
        if profiler is not None:
            profiler.disable()
        per_graph.append((time.process_time() - started) * 1000 / len(keys))
    result = {
        "graphs": len(keys),
        "children": sum(len(v) for v in view.by_graph.values()),
        "rounds": rounds,
        "cpu_ms_per_graph_median": round(statistics.median(per_graph), 3),
        "cpu_ms_per_graph_min": round(min(per_graph), 3),
        "cpu_ms_per_graph_max": round(max(per_graph), 3),
        "writes_after_start": api.writes,
    }
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
        stats = pstats.Stats(str(profile))
        stats.sort_stats("cumulative").print_stats(r"dgd_operator", 30)
        stats.sort_stats("tottime").print_stats(25)
    return result


def server_fields(obj: Manifest, index: int) -> Manifest:
    """`obj` as a LIST hands it over: uid, timestamps and a managedFields entry per manager."""
    live = copy.deepcopy(obj)
    meta = live["metadata"]
    meta.update(uid=f"uid-{index}", resourceVersion=str(1000 + index), generation=1)
    meta["creationTimestamp"] = "2026-01-01T00:00:00Z"
    spec_fields: dict[str, Any] = {f"f:{k}": {} for k in (live.get("spec") or {})}
    meta["managedFields"] = [
        {
            "manager": manager,
            "operation": operation,
            "apiVersion": live["apiVersion"],
            "time": "2026-01-01T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {}}, "f:spec": spec_fields},
            **({"subresource": "status"} if operation == "Update" else {}),
        }
        for manager, operation in (("dgd-operator", "Apply"), ("kube-controller-manager", "Update"))
    ]
    return live


def memory(count: int = 1000) -> dict[str, Any]:
    """Bytes allocated for `count` cached children, as listed and as the cache keeps them."""
    from dgd_operator.handlers import slim  # imports kopf: only here
    from dgd_operator.reconcile.view import cached_child

    api, _view, _keys = converged(fixture_graphs())
    pool = [o for o in api.objects.values() if o["kind"] != "Event"]
    # Each object decoded on its own, as a watch stream delivers it (no shared subtrees).
    encoded = [json.dumps(server_fields(pool[i % len(pool)], i)) for i in range(count)]
    result: dict[str, Any] = {"objects": count}
    keeps: tuple[tuple[str, Callable[[Manifest], Any]], ...] = (
        ("listed", lambda o: o),
        ("slim", slim),
        ("cached", lambda o: cached_child(slim(o))),
    )
    for label, keep in keeps:
        gc.collect()
        tracemalloc.start()
        held = [keep(json.loads(text)) for text in encoded]
        gc.collect()
        current, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result[f"{label}_kib_per_1000"] = round(current / 1024 * 1000 / count)
        del held
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print it as JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the rounds here")
    parser.add_argument("--memory", action="store_true", help="measure the cache's memory")
    parser.add_argument(
        "--only", default="", help="only the graphs whose label contains this (e.g. bench_dgd)"
    )
    parser.add_argument("--copies", type=int, default=1, help="store each graph this many times")
    args = parser.parse_args(argv)
    result = memory() if args.memory else measure(args.rounds, args.profile, args.only, args.copies)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
