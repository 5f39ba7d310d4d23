"""What the operator's watch cache costs in RSS, in process, without a control plane (issue 16).

Builds the JSON bytes of LIST pages as the API server returns them for `--dgds` graphs of the
benchmark's shape (4 Deployments, 4 Services, a ServiceAccount, a Role and a RoleBinding per
graph, created by the operator with POSTs so each carries its `Update` managedFields entry, and
the controller-manager's status entry on Deployments), from real objects captured once from a
control plane (`--sample DIR` holds `page_<plural>.json` LIST answers; without it, the copies in
`benchmarks/data/cache_rss/`). The pages go through the decoding the operator's informers use
(the lean shape of `reconcile.shapes` for Deployments, the whole document otherwise), the real
`Informer` and the real event handlers into the view. Prints VmRSS/VmHWM after each stage and
what tracemalloc says the cache holds.

    .venv/bin/python benchmarks/cache_rss.py --dgds 1000
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import ctypes
import gc
import json
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from dgd_operator.controllerkit.decoding import Decode
from dgd_operator.controllerkit.informer import Informer
from dgd_operator.controllerkit.kubeapi import Manifest
from dgd_operator.handlers import Watches
from dgd_operator.reconcile.resources import WATCHED_CHILD_KINDS
from dgd_operator.reconcile.shapes import SHAPES
from dgd_operator.reconcile.view import IndexedClusterView

SAMPLES = Path(__file__).with_name("data") / "cache_rss"
PER_GRAPH = {"deployments": 4, "services": 4, "serviceaccounts": 1, "roles": 1, "rolebindings": 1}
KIND_OF_PLURAL = {rk.plural: rk.kind for rk in WATCHED_CHILD_KINDS}
"""The kind of each sampled plural, from the operator's own watch list."""


def proc_status() -> dict[str, float]:
    """VmRSS and VmHWM of this process, in MiB."""
    found: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = round(int(value.split()[0]) / 1024, 1)
    return found


def renamed(obj: Any, old: str, new: str) -> Any:
    """`obj` with every string containing `old` rewritten to contain `new` (fresh copies)."""
    if isinstance(obj, dict):
        return {renamed(k, old, new): renamed(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [renamed(v, old, new) for v in obj]
    if isinstance(obj, str):
        return obj.replace(old, new)
    return copy.copy(obj)


def write_pages(samples: Path, plural: str, graphs: int, into: Path, page_size: int) -> list[Path]:
    """Write the LIST answer for `graphs` graphs' objects of `plural` into files, a page each
    (read back one at a time, as they arrive from the network)."""
    sample = json.loads((samples / f"page_{plural}.json").read_text())
    items = sample["items"][: PER_GRAPH[plural]]
    graph = str(items[0]["metadata"]["labels"]["nvidia.com/dynamo-graph-deployment-name"])
    uid = str(items[0]["metadata"]["uid"])
    objects = []
    for g in range(graphs):
        for i, item in enumerate(items):
            obj = renamed(item, graph, f"bench-{g:04d}")
            obj["metadata"]["uid"] = f"{uid[:-12]}{g * 16 + i:012d}"
            obj["metadata"]["resourceVersion"] = str(1000 + g * 16 + i)
            objects.append(obj)
    pages: list[Path] = []
    for start in range(0, len(objects), page_size):
        chunk = objects[start : start + page_size]
        more = start + page_size < len(objects)
        meta = {"resourceVersion": "99999", **({"continue": str(len(pages) + 1)} if more else {})}
        page = {"kind": sample.get("kind"), "apiVersion": sample.get("apiVersion")}
        path = into / f"{plural}-{len(pages):04d}.json"
        path.write_text(json.dumps({**page, "metadata": meta, "items": chunk}))
        pages.append(path)
    return pages


class PagedClient:
    """Answers LIST pages from bytes, decoded as `KubeClient.request` decodes them."""

    def __init__(self, pages: list[Path]) -> None:
        self.pages = pages

    async def list_page(
        self, path: str, params: Mapping[str, str], decode: Decode | None = None
    ) -> Manifest:
        """The next page (the `continue` token is its index)."""
        raw = self.pages[int(params.get("continue", "0"))].read_bytes()
        result: Manifest = (decode or orjson.loads)(raw)
        return result

    async def watch_events(
        self, path: str, params: Mapping[str, str], decode: Decode | None = None
    ) -> AsyncIterator[Manifest]:
        """No watch events (only the initial listing is measured)."""
        for _ in ():
            yield {}


class QuietController:
    """The two calls the handlers make on a controller, doing nothing."""

    def enqueue(self, key: Any) -> None:
        """Nothing to reconcile here."""

    def child_deleted(self, namespace: str, key: Any) -> None:
        """Nothing to forget here."""


async def fill(view: IndexedClusterView, pages: dict[str, list[Path]]) -> None:
    """Deliver every page through an informer and the child handler into `view`."""
    watches = Watches(QuietController(), view)  # type: ignore[arg-type]
    for plural, plural_pages in pages.items():
        informer = Informer(
            PagedClient(plural_pages),
            f"/x/{plural}",
            watches.child_event,
            api_version="v1",
            kind=plural,
            shape=SHAPES.get(KIND_OF_PLURAL[plural]),
        )
        await informer.list_all()


def main(argv: list[str] | None = None) -> int:
    """Measure and print JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dgds", type=int, default=1000)
    parser.add_argument("--sample", type=Path, default=SAMPLES)
    parser.add_argument("--page-size", type=int, default=Informer.page_size_default)
    parser.add_argument("--trace", action="store_true", help="also measure with tracemalloc")
    parser.add_argument("--trim", action="store_true", help="then malloc_trim (glibc)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dgd-cache-rss-") as tmp:
        if not args.measure:
            for plural in PER_GRAPH:
                write_pages(args.sample, plural, args.dgds, Path(tmp), args.page_size)
            # A fresh process reads them, so building the pages leaves no trace in its RSS.
            command = [sys.executable, __file__, "--measure", tmp, "--dgds", str(args.dgds)]
            command += ["--page-size", str(args.page_size)]
            command += ["--trace"] if args.trace else []
            command += ["--trim"] if args.trim else []
            return subprocess.run(command, check=False).returncode
    pages = {p: sorted(args.measure.glob(f"{p}-*.json")) for p in PER_GRAPH}
    result: dict[str, Any] = {"dgds": args.dgds, "page_size": args.page_size}
    result["start"] = proc_status()
    result["pages_mib"] = round(sum(f.stat().st_size for v in pages.values() for f in v) / 2**20, 1)
    if args.trace:
        tracemalloc.start()
    view = IndexedClusterView()
    asyncio.run(fill(view, pages))
    gc.collect()
    result["children"] = len(view.children_index)
    result["cache_filled"] = proc_status()
    if args.trace:
        current, peak = tracemalloc.get_traced_memory()
        result["traced_mib"] = {
            "current": round(current / 2**20, 1),
            "peak": round(peak / 2**20, 1),
        }
        tracemalloc.stop()
    if args.trim:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        result["trimmed"] = proc_status()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
