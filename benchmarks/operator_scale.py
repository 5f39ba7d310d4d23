"""Operator at scale (issue 4): N DGDs created at once, against a plain-client floor in the same run.

The graphs are written at ``--dgd-api`` (v1beta1 by default, Dynamo 1.5's API; v1alpha1 makes
every status write cost the API server more conversion-webhook calls).

Phases, all on one local control plane (started here unless ``--kubeconfig`` is given):

1. **floor** (namespaces ``bench-floorC-*``, no operator): the same N DGDs are created, and as
   each one is created a plain async client renders its children with ``build_graph`` and POSTs
   them, C DGDs at a time with each DGD's children in order - the shape of the operator's work,
   minus everything an operator adds (watches, queueing, status). C is swept
   (``--floor-concurrency``, default 4, 16, 64) and the floor is the best C (separately for "all
   children exist" and "all Deployments ready"), so the ratio measures the operator, not a
   floor held back to the operator's concurrency. Each namespace is deleted (and awaited) so
   the next phase starts on an equally empty cluster.
2. **operator** (namespace ``bench-op-*``): ``dgd operator`` runs as a child process watching
   that namespace with ``DGD_WORKERS=--workers``; the N DGDs are created (same code, same
   concurrency) and we measure time until every child exists and until every DGD reports
   ``state: successful``.
3. **steady state**: ``--steady-seconds`` of nothing happening; the operator must write nothing.
4. **restart**: the operator is stopped and started again; once it has reconciled every DGD
   again, count what it wrote (must be nothing). The resume time runs from the start of the
   new process to the last change of its counters (so the quiet period that proves it settled
   is not counted); per DGD it must stay flat as N grows (linear start-up).
5. **floor again** (``--floor-after``): the operator is stopped, its namespace deleted, and the
   floor is run once more at the sweep's best concurrency. The host's speed drifts by up to a
   quarter within an hour here, so a ratio against a floor run 15 minutes earlier carries that
   drift; against the mean of a floor before and one after, a drift that is steady over the run
   cancels, and the two floors' difference shows how much drift the run had.

Counting API requests. ``apiserver_request_total`` has no client label, so the API server's
deltas (reported by verb, cluster-wide, per phase) include kube-controller-manager, the
scheduler and the simulated kubelet. "Operator writes" therefore come from the operator's own
client counter (``dgd_operator_api_requests_total`` on its /metrics: every request its
``KubeClient`` sends), cross-checked with API-server deltas on resources that only the operator
writes (DGDs and their status, Services, ServiceAccounts, Roles, RoleBindings, Events) - which
also catches writes made by kopf itself, outside that client.

Peak RSS is ``VmHWM`` of the operator process from /proc. Targets are printed as PASS/FAIL; the
exit code does not depend on them. Timings are informative only (tests never assert them).

    .venv/bin/python benchmarks/operator_scale.py [--dgds 200] [--steady-seconds 60] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from dgd_operator.api.constants import MANAGED_BY
from dgd_operator.api.conversion import dgd_to_v1beta1
from dgd_operator.api.naming import PLANNER_SERVICE_ACCOUNT
from dgd_operator.api.validation import parse_dgd
from dgd_operator.builders.graph import build_graph
from dgd_operator.builders.shared import shared_account_objects
from dgd_operator.controllerkit.kube import Credentials
from dgd_operator.dev import binaries, operator_process
from dgd_operator.dev.controlplane import ControlPlane
from dgd_operator.dev.operator_process import OperatorProcess, OperatorStartError
from dgd_operator.dev.processes import cpu_seconds
from dgd_operator.reconcile.readiness import deployment_readiness
from dgd_operator.reconcile.resources import resource_kind
from dgd_operator.settings import OperatorSettings

DGD_APIS = {"v1beta1": "nvidia.com/v1beta1", "v1alpha1": "nvidia.com/v1alpha1"}
# The graphs are created at ``--dgd-api``: v1beta1 by default, the API of Dynamo 1.5 and of 49
# of the 50 graphs in its examples. Every DGD write costs one conversion-webhook call at either
# version (the API server converts it for its v1alpha1 watch cache); at v1alpha1 (older
# manifests) a status write costs more, as the field manager also converts the object to the
# version of the creator's managedFields entry (benchmarks/operator_api_costs.py measures
# both). They are watched at the storage version, as kubectl (preferred version) and the
# operator read them.
DGD_WATCH_API = "nvidia.com/v1beta1"
DGD_KIND = "DynamoGraphDeployment"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_DGD_NAME = "nvidia.com/dynamo-graph-deployment-name"
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}=dgd-operator"
META_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
META_LIST_ACCEPT = (
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
)
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})
OPERATOR_WRITE_VERBS = frozenset({"create", "apply", "patch", "update", "delete"})
# Resources nobody but the operator (and this benchmark, before a window opens) writes. Not
# Events: the controller-manager, the scheduler and the kubelet write ~10 per graph, and their
# broadcasters may still be draining when a window opens; the operator's own Events are
# counted by their reporting component (`operator_events`).
OPERATOR_ONLY = frozenset(
    {"dynamographdeployments", "services", "serviceaccounts", "roles", "rolebindings"}
)

TARGET_RATIO = 1.2
TARGET_EXTRA_WRITES = 2
TARGET_EVENTS_PER_DGD = 1  # the create Event (one per graph created)
NAMESPACE_WIDE_WRITES = 1  # the namespace's shared ServiceAccount, once per namespace
TARGET_RSS_MB = 300.0
TARGET_RSS_AT = 1000
TARGET_RESUME_S = 30.0


def bench_dgd(name: str, namespace: str, api: str = "v1alpha1") -> dict[str, Any]:
    """One benchmark graph: frontend, decode and prefill workers (1 GPU each) and a planner.

    Written at v1alpha1; ``api="v1beta1"`` gives the same graph as a v1beta1 author writes it
    (converted, without the annotation that carries v1alpha1-only fields: such an author has
    none). Both render the same children.
    """
    doc = _bench_dgd_v1alpha1(name, namespace)
    if api == "v1alpha1":
        return doc
    beta = dgd_to_v1beta1(doc)
    beta["metadata"].pop("annotations", None)
    return beta


def _bench_dgd_v1alpha1(name: str, namespace: str) -> dict[str, Any]:
    """`bench_dgd` as written at v1alpha1 (its services map)."""

    def main(*args: str) -> dict[str, Any]:
        container: dict[str, Any] = {"image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.8.0"}
        if args:
            container.update(command=["python3", "-m", args[0]], args=list(args[1:]))
        return {"mainContainer": container}

    gpu = {"limits": {"gpu": "1"}}
    return {
        "apiVersion": DGD_APIS["v1alpha1"],
        "kind": DGD_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "backendFramework": "vllm",
            "services": {
                "Frontend": {"componentType": "frontend", "replicas": 1, "extraPodSpec": main()},
                "VllmDecodeWorker": {
                    "componentType": "worker",
                    "subComponentType": "decode",
                    "replicas": 1,
                    "resources": gpu,
                    "extraPodSpec": main(
                        "dynamo.vllm", "--model", "Qwen/Qwen3-0.6B", "--is-decode-worker"
                    ),
                },
                "VllmPrefillWorker": {
                    "componentType": "worker",
                    "subComponentType": "prefill",
                    "replicas": 1,
                    "resources": gpu,
                    "extraPodSpec": main(
                        "dynamo.vllm", "--model", "Qwen/Qwen3-0.6B", "--is-prefill-worker"
                    ),
                },
                "Planner": {
                    "componentType": "planner",
                    "replicas": 1,
                    "extraPodSpec": main("dynamo.planner", "--environment", "kubernetes"),
                },
            },
        },
    }


def cluster_shape(dgds: int) -> tuple[int, int]:
    """Simulated (nodes, GPUs per node) for ``dgds`` benchmark graphs: room for 1.5x their 4
    pods at 100 pods per node, and 1.5x their 2 GPUs."""
    nodes = max(2, math.ceil(1.5 * 4 * dgds / 100))
    return nodes, max(8, math.ceil(1.5 * 2 * dgds / nodes))


def dgd_names(count: int) -> list[str]:
    """``bench-0000`` .. ``bench-<count-1>``."""
    return [f"bench-{i:04d}" for i in range(count)]


# ------------------------------------------------------------------------------------ client


def credentials_from_kubeconfig(path: Path) -> Credentials:
    """Credentials of the current context of a kubeconfig (files or inline data, or a token)."""
    config = yaml.safe_load(path.read_text())
    ctx_name = config.get("current-context")
    ctx = next(c["context"] for c in config["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == ctx["user"])

    def resolve(value: str | None) -> str | None:
        if not value:
            return None
        candidate = Path(value)
        return str(candidate if candidate.is_absolute() else path.parent / candidate)

    def data(key: str) -> bytes | None:
        raw = user.get(key) if key.startswith("client") else cluster.get(key)
        return base64.b64decode(raw) if raw else None

    return Credentials(
        server=cluster["server"],
        ca_path=resolve(cluster.get("certificate-authority")),
        ca_data=(data("certificate-authority-data") or b"").decode() or None,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        token=user.get("token"),
        certificate_path=resolve(user.get("client-certificate")),
        certificate_data=data("client-certificate-data"),
        private_key_path=resolve(user.get("client-key")),
        private_key_data=data("client-key-data"),
    )


class ApiFailureError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, method: str, path: str, text: str) -> None:
        self.status = status
        super().__init__(f"{method} {path}: {status}: {text[:300]}")


class Api:
    """A plain async JSON client (one aiohttp session): the benchmark's hands and eyes."""

    def __init__(self, credentials: Credentials, limit: int = 64) -> None:
        self._credentials = credentials
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session (opened on first use)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                base_url=self._credentials.server.rstrip("/"),
                connector=aiohttp.TCPConnector(
                    ssl=self._credentials.ssl_context(), limit=self._limit
                ),
                headers={**self._credentials.headers(), "User-Agent": "dgd-bench"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            )
        return self._session

    async def close(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None
    ) -> Any:
        """One request; the decoded JSON answer (text for non-JSON). Raises ApiFailureError."""
        url = path + ("?" + urlencode(params) if params else "")
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        headers = {"Content-Type": "application/json"} if data is not None else {}
        async with self.session.request(method, url, data=data, headers=headers) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise ApiFailureError(resp.status, method, path, text)
            return json.loads(text) if resp.content_type == "application/json" else text

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """POST one object to its collection, retrying what a real client retries: an
        overloaded API server (429, 5xx such as the 504 of a request that outlived its
        deadline) with backoff; a 409 after such a retry means the first attempt landed."""
        rk = resource_kind(obj["apiVersion"], obj["kind"])
        path = rk.collection_path(obj["metadata"].get("namespace"))
        for attempt in range(8):
            try:
                result: dict[str, Any] = await self.request("POST", path, body=obj)
                return result
            except ApiFailureError as exc:
                if exc.status == 409 and attempt:
                    return dict(obj)
                if exc.status != 429 and exc.status < 500:
                    raise
                await asyncio.sleep(min(10.0, 0.5 * 2**attempt))
        return await self.request("POST", path, body=obj)  # type: ignore[no-any-return]

    async def watch(
        self, path: str, params: Mapping[str, str], *, metadata_only: bool = False
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """List then watch ``path`` forever: yields ("ADDED"|"MODIFIED"|"DELETED", object).

        The initial list is yielded as ADDED events; the watch resumes from the last
        resourceVersion when the server ends it, and relists on 410 Gone.
        """
        headers = {"Accept": META_ACCEPT} if metadata_only else {}
        list_headers = {"Accept": META_LIST_ACCEPT} if metadata_only else {}
        while True:
            async with self.session.get(path, params=dict(params), headers=list_headers) as resp:
                if resp.status >= 400:
                    raise ApiFailureError(resp.status, "LIST", path, await resp.text())
                listing = await resp.json()
            version = listing["metadata"]["resourceVersion"]
            for item in listing.get("items") or []:
                yield "ADDED", item
            gone = False
            while not gone:
                query = {
                    **params,
                    "watch": "true",
                    "resourceVersion": version,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": "600",
                }
                async with self.session.get(path, params=query, headers=headers) as resp:
                    if resp.status == 410:
                        gone = True
                        continue
                    if resp.status >= 400:
                        raise ApiFailureError(resp.status, "WATCH", path, await resp.text())
                    async for raw in resp.content:
                        if not raw.strip():
                            continue
                        event = json.loads(raw)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            if obj.get("code") == 410:
                                gone = True
                                break
                            raise ApiFailureError(
                                int(obj.get("code", 500)), "WATCH", path, str(obj)
                            )
                        version = (obj.get("metadata") or {}).get("resourceVersion", version)
                        if event.get("type") != "BOOKMARK":
                            yield str(event["type"]), obj


# ------------------------------------------------------------------------------------ metrics


def cpu_snapshot(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds per component."""
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds spent per component between two snapshots, largest first."""
    spent = {name: round(after.get(name, 0.0) - before.get(name, 0.0), 2) for name in after}
    return dict(sorted(spent.items(), key=lambda kv: -kv[1]))


Counts = dict[tuple[str, str, str], float]


async def operator_events(api: Api) -> int:
    """Occurrences of the Events the operator reported, cluster-wide (each Event's ``count``)."""
    total, token = 0, ""
    while True:
        params = {"fieldSelector": f"reportingComponent={MANAGED_BY}", "limit": "500"}
        if token:
            params["continue"] = token
        page = await api.request("GET", "/api/v1/events", params=params)
        total += sum(int(item.get("count") or 1) for item in page["items"])
        token = page["metadata"].get("continue") or ""
        if not token:
            return total


async def apiserver_counts(api: Api) -> Counts:
    """``apiserver_request_total`` summed by (verb, resource, subresource), plus the request
    duration sums by verb under the pseudo-resource ``~seconds`` (for mean latencies)."""
    text = await api.request("GET", "/metrics")
    counts: Counts = collections.defaultdict(float)
    for family in text_string_to_metric_families(str(text)):
        if family.name == "apiserver_request_duration_seconds":
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    counts[(sample.labels.get("verb", ""), "~seconds", "")] += sample.value
                elif sample.name.endswith("_count"):
                    counts[(sample.labels.get("verb", ""), "~count", "")] += sample.value
            continue
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                labels = sample.labels
                key = (
                    labels.get("verb", ""),
                    labels.get("resource", ""),
                    labels.get("subresource", ""),
                )
                counts[key] += sample.value
    return dict(counts)


def mean_latency_ms(counts: Counts) -> dict[str, float]:
    """Mean API-server request latency by verb (ms), from duration sum/count deltas."""
    out: dict[str, float] = {}
    for (verb, res, _sub), value in counts.items():
        if res == "~seconds" and verb not in ("WATCH",):
            n = counts.get((verb, "~count", ""), 0.0)
            if n:
                out[verb] = round(1000.0 * value / n, 1)
    return out


def delta(before: Counts, after: Counts) -> Counts:
    """Non-zero differences ``after - before``."""
    keys = set(before) | set(after)
    return {
        k: after.get(k, 0.0) - before.get(k, 0.0)
        for k in keys
        if after.get(k, 0.0) != before.get(k, 0.0)
    }


def by_verb(counts: Counts, verbs: frozenset[str] | None = None) -> dict[str, int]:
    """Counts summed per verb (optionally only ``verbs``), largest first."""
    totals: dict[str, float] = collections.defaultdict(float)
    for (verb, res, _sub), value in counts.items():
        if res.startswith("~"):
            continue
        if verbs is None or verb in verbs:
            totals[verb] += value
    return {k: int(v) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def operator_only_writes(counts: Counts) -> dict[str, int]:
    """API-server writes on resources only the operator writes, by ``verb resource[/sub]``."""
    out: dict[str, int] = {}
    for (verb, res, sub), value in sorted(counts.items()):
        if verb in WRITE_VERBS and res in OPERATOR_ONLY and value:
            out[f"{verb} {res}{'/' + sub if sub else ''}"] = int(value)
    return out


@dataclass
class OperatorMetrics:
    """What the operator's /metrics says: its client's requests and its reconcile count."""

    requests: dict[tuple[str, str], float] = field(default_factory=dict)
    reconciles: float = 0.0
    queue_depth: float = 0.0
    reconcile_seconds: float = 0.0
    settled_at: float = 0.0
    """Monotonic time of the last counter change seen by `settle`."""

    def writes(self) -> dict[str, int]:
        """Write requests by ``verb resource``."""
        return {
            f"{verb} {res}": int(n)
            for (verb, res), n in sorted(self.requests.items())
            if verb in OPERATOR_WRITE_VERBS and n
        }

    def total_writes(self) -> int:
        """All write requests."""
        return sum(self.writes().values())

    def minus(self, earlier: OperatorMetrics) -> OperatorMetrics:
        """Counter differences since ``earlier`` (same process)."""
        keys = set(self.requests) | set(earlier.requests)
        return OperatorMetrics(
            {k: self.requests.get(k, 0.0) - earlier.requests.get(k, 0.0) for k in keys},
            self.reconciles - earlier.reconciles,
            self.queue_depth,
            self.reconcile_seconds - earlier.reconcile_seconds,
        )


async def operator_metrics(session: aiohttp.ClientSession, url: str) -> OperatorMetrics:
    """Scrape the operator's Prometheus endpoint."""
    async with session.get(url) as resp:
        text = await resp.text()
    result = OperatorMetrics()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "dgd_operator_api_requests_total":
                key = (sample.labels["verb"], sample.labels["resource"])
                result.requests[key] = result.requests.get(key, 0.0) + sample.value
            elif sample.name == "dgd_operator_reconcile_duration_seconds_count":
                result.reconciles = sample.value
            elif sample.name == "dgd_operator_reconcile_duration_seconds_sum":
                result.reconcile_seconds = sample.value
            elif sample.name == "dgd_operator_queue_depth":
                result.queue_depth = sample.value
    return result


# ------------------------------------------------------------------------------------ operator


async def start_operator(
    work: Path, kubeconfig: Path, namespace: str, workers: int, tag: str
) -> OperatorProcess:
    """`dgd operator` for ``namespace`` with ``DGD_WORKERS=workers``, healthy (launched off the loop)."""
    settings = OperatorSettings(watch_namespaces=(namespace,), workers=workers)
    try:
        return await asyncio.to_thread(
            operator_process.start_operator,
            kubeconfig,
            settings,
            run_dir=work,
            log_dir=work,
            name=f"dgd-operator-{tag}",
        )
    except OperatorStartError as exc:
        raise SystemExit(str(exc)) from None


# ------------------------------------------------------------------------------------ phases


@dataclass
class Tracker:
    """Watches a namespace and records when milestones are reached."""

    expected_children: int
    expected_dgds: int
    began: float = 0.0
    children: set[tuple[str, str]] = field(default_factory=set)
    ready_dgds: set[str] = field(default_factory=set)
    ready_deployments: set[str] = field(default_factory=set)
    children_done: float | None = None
    ready_done: float | None = None
    deployments_ready_done: float | None = None
    expected_deployments: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def now(self) -> float:
        """Seconds since the phase began."""
        return time.monotonic() - self.began

    def child_seen(self, kind: str, name: str) -> None:
        """A child exists."""
        self.children.add((kind, name))
        if self.children_done is None and len(self.children) >= self.expected_children:
            self.children_done = self.now()
        self.changed.set()

    def dgd_seen(self, obj: Mapping[str, Any]) -> None:
        """A DGD changed: is it Ready for its generation?"""
        status = obj.get("status") or {}
        name = str(obj["metadata"]["name"])
        if status.get("state") == "successful" and status.get("observedGeneration") == obj[
            "metadata"
        ].get("generation"):
            self.ready_dgds.add(name)
        else:
            self.ready_dgds.discard(name)
        if self.ready_done is None and len(self.ready_dgds) >= self.expected_dgds:
            self.ready_done = self.now()
        self.changed.set()

    def deployment_seen(self, obj: Mapping[str, Any]) -> None:
        """A Deployment changed: is it ready (by Dynamo's rules)?"""
        name = str(obj["metadata"]["name"])
        obj = {**obj, "kind": "Deployment"}
        if deployment_readiness(obj).ready:
            self.ready_deployments.add(name)
        else:
            self.ready_deployments.discard(name)
        if (
            self.deployments_ready_done is None
            and len(self.ready_deployments) >= self.expected_deployments
        ):
            self.deployments_ready_done = self.now()
        self.changed.set()


def child_kinds(sample: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Distinct (apiVersion, kind) of a rendered graph, in order."""
    return list(dict.fromkeys((o["apiVersion"], o["kind"]) for o in sample))


async def run_watchers(
    api: Api, namespace: str, kinds: list[tuple[str, str]], tracker: Tracker, *, dgds: bool
) -> list[asyncio.Task[None]]:
    """Start watch tasks feeding ``tracker`` (children by metadata; DGDs or Deployments in full)."""

    async def children(api_version: str, kind: str) -> None:
        path = resource_kind(api_version, kind).collection_path(namespace)
        async for etype, obj in api.watch(
            path, {"labelSelector": MANAGED_SELECTOR}, metadata_only=True
        ):
            if etype != "DELETED":
                tracker.child_seen(kind, obj["metadata"]["name"])

    async def dgd_watch() -> None:
        path = resource_kind(DGD_WATCH_API, DGD_KIND).collection_path(namespace)
        async for etype, obj in api.watch(path, {}):
            if etype != "DELETED":
                tracker.dgd_seen(obj)

    async def deployment_watch() -> None:
        path = resource_kind("apps/v1", "Deployment").collection_path(namespace)
        async for etype, obj in api.watch(path, {"labelSelector": MANAGED_SELECTOR}):
            if etype != "DELETED":
                tracker.deployment_seen(obj)

    tasks = [asyncio.create_task(children(av, k)) for av, k in kinds]
    tasks.append(asyncio.create_task(dgd_watch() if dgds else deployment_watch()))
    tracker.tasks = tasks
    await asyncio.sleep(0.5)  # let the initial lists land before the clock starts
    return tasks


async def stop_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel and await tasks."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def wait_until(
    tracker: Tracker, done: Callable[[], bool], timeout: float, what: str, report: Callable[[], str]
) -> None:
    """Wait for ``done()``, printing progress every few seconds; SystemExit on timeout or when a
    watch task died."""
    deadline = time.monotonic() + timeout
    next_print = time.monotonic() + 5
    while not done():
        for task in tracker.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise SystemExit(f"a watch failed while waiting for {what}: {task.exception()}")
        tracker.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tracker.changed.wait(), 1.0)
        if time.monotonic() > next_print:
            print(f"    {tracker.now():6.1f}s  {report()}", flush=True)
            next_print = time.monotonic() + 5
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g}s waiting for {what}: {report()}")


async def create_namespace(api: Api, name: str) -> None:
    """Create a namespace and wait for its default ServiceAccount (pods need it)."""
    await api.request(
        "POST",
        "/api/v1/namespaces",
        body={"metadata": {"name": name, "labels": {"dgd.dev/bench": "true"}}},
    )
    for _ in range(300):
        try:
            await api.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")
            return
        except ApiFailureError:
            await asyncio.sleep(0.1)
    raise SystemExit(f"namespace {name} got no default ServiceAccount")


async def delete_namespace(api: Api, name: str, timeout: float) -> float | None:
    """Delete a namespace; seconds until it is gone (None when it outlived ``timeout``)."""
    began = time.monotonic()
    with contextlib.suppress(ApiFailureError):
        await api.request(
            "DELETE", f"/api/v1/namespaces/{name}", body={"propagationPolicy": "Background"}
        )
    while time.monotonic() - began < timeout:
        try:
            await api.request("GET", f"/api/v1/namespaces/{name}")
        except ApiFailureError as exc:
            if exc.status == 404:
                return time.monotonic() - began
        await asyncio.sleep(0.5)
    return None


async def create_dgds(
    api: Api,
    namespace: str,
    names: list[str],
    concurrency: int,
    dgd_api: str,
    on_created: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Create the benchmark DGDs at ``dgd_api``, ``concurrency`` requests in flight."""
    gate = asyncio.Semaphore(concurrency)

    async def one(name: str) -> None:
        async with gate:
            created = await api.create(bench_dgd(name, namespace, dgd_api))
        if on_created is not None:
            on_created(created)

    await asyncio.gather(*(one(n) for n in names))


@dataclass
class PhaseResult:
    """Timings and request counts of the floor or operator phase."""

    children_s: float
    ready_s: float
    apiserver: Counts
    operator: OperatorMetrics | None = None
    cpu: dict[str, float] = field(default_factory=dict)


async def floor_phase(
    api: Api,
    namespace: str,
    names: list[str],
    args: argparse.Namespace,
    concurrency: int,
    kinds: list[tuple[str, str]],
    per_dgd: int,
    pids: Mapping[str, int],
) -> PhaseResult:
    """Plain client: create each DGD and, right after, its rendered children with POSTs
    (``concurrency`` DGDs at a time, each DGD's children in order)."""
    options = OperatorSettings().to_build_options()
    tracker = Tracker(expected_children=per_dgd * len(names), expected_dgds=len(names))
    sample = build_graph(parse_dgd(bench_dgd("x", namespace)), namespace, options)
    tracker.expected_deployments = sum(1 for o in sample if o["kind"] == "Deployment") * len(names)
    # Namespace-wide accounts (the planner's) that the operator creates once per namespace.
    for manifest in shared_account_objects(namespace, PLANNER_SERVICE_ACCOUNT, None):
        await api.create(manifest)
    tasks = await run_watchers(api, namespace, kinds, tracker, dgds=False)
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def worker() -> None:
        while True:
            body = await queue.get()
            if body is None:
                return
            dgd = parse_dgd({k: v for k, v in body.items() if k != "status"})
            for child in build_graph(dgd, namespace, options):
                await api.create(child)

    before = await apiserver_counts(api)
    cpu_before = cpu_snapshot(pids)
    tracker.began = time.monotonic()
    pprof = asyncio.create_task(capture_control_plane_profiles(api, args, f"floor-c{concurrency}"))
    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await create_dgds(
        api, namespace, names, args.create_concurrency, args.dgd_api, queue.put_nowait
    )
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    await wait_until(
        tracker,
        lambda: tracker.children_done is not None,
        args.timeout,
        "all floor children",
        lambda: f"children {len(tracker.children)}/{tracker.expected_children}",
    )
    await wait_until(
        tracker,
        lambda: tracker.deployments_ready_done is not None,
        args.timeout,
        "floor Deployments ready",
        lambda: (
            f"deployments ready {len(tracker.ready_deployments)}/{tracker.expected_deployments}"
        ),
    )
    cpu = cpu_delta(cpu_before, cpu_snapshot(pids))
    await pprof
    after = await apiserver_counts(api)
    await stop_tasks(tasks)
    assert tracker.children_done is not None and tracker.deployments_ready_done is not None
    return PhaseResult(
        tracker.children_done, tracker.deployments_ready_done, delta(before, after), cpu=cpu
    )


async def settle(
    op: OperatorProcess,
    session: aiohttp.ClientSession,
    minimum_reconciles: float,
    quiet: float = 2.0,
    timeout: float = 300.0,
) -> OperatorMetrics:
    """Wait until the operator has done ``minimum_reconciles`` and its counters stop moving."""
    deadline = time.monotonic() + timeout
    last = await operator_metrics(session, op.metrics_url)
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = await operator_metrics(session, op.metrics_url)
        if now.requests != last.requests or now.reconciles != last.reconciles or now.queue_depth:
            stable_since = time.monotonic()
        last = now
        if now.reconciles >= minimum_reconciles and time.monotonic() - stable_since >= quiet:
            now.settled_at = stable_since
            return now
    raise SystemExit(f"the operator did not settle in {timeout:g}s (reconciles {last.reconciles})")


async def operator_phase(
    api: Api,
    op: OperatorProcess,
    session: aiohttp.ClientSession,
    namespace: str,
    names: list[str],
    args: argparse.Namespace,
    kinds: list[tuple[str, str]],
    per_dgd: int,
    pids: Mapping[str, int],
) -> PhaseResult:
    """Create the DGDs and let the operator do the rest."""
    tracker = Tracker(expected_children=per_dgd * len(names), expected_dgds=len(names))
    tasks = await run_watchers(api, namespace, kinds, tracker, dgds=True)
    before = await apiserver_counts(api)
    op_before = await operator_metrics(session, op.metrics_url)
    pids = {**pids, "dgd-operator": op.proc.pid}
    profiler = start_profiler(op, args.profile) if args.profile else None
    cpu_before = cpu_snapshot(pids)
    tracker.began = time.monotonic()
    pprof = asyncio.create_task(capture_control_plane_profiles(api, args, "operator"))
    await create_dgds(api, namespace, names, args.create_concurrency, args.dgd_api)
    await wait_until(
        tracker,
        lambda: tracker.children_done is not None,
        args.timeout,
        "all children",
        lambda: (
            f"children {len(tracker.children)}/{tracker.expected_children}, DGDs ready {len(tracker.ready_dgds)}/{len(names)}"
        ),
    )
    await wait_until(
        tracker,
        lambda: tracker.ready_done is not None,
        args.timeout,
        "every DGD Ready",
        lambda: f"DGDs ready {len(tracker.ready_dgds)}/{len(names)}",
    )
    cpu = cpu_delta(cpu_before, cpu_snapshot(pids))
    if profiler is not None and args.profile is not None:
        stop_profiler(profiler, args.profile)
    await pprof
    op_after = await settle(op, session, op_before.reconciles + len(names))
    after = await apiserver_counts(api)
    await stop_tasks(tasks)
    assert tracker.children_done is not None and tracker.ready_done is not None
    return PhaseResult(
        tracker.children_done,
        tracker.ready_done,
        delta(before, after),
        op_after.minus(op_before),
        cpu,
    )


# ------------------------------------------------------------------------------------ profiling


async def capture_control_plane_profiles(api: Api, args: argparse.Namespace, phase: str) -> None:
    """CPU profiles of kube-apiserver and kube-controller-manager over the next
    ``--apiserver-profile-seconds``, saved as ``<component>-<phase>.pb.gz`` (pprof format).

    With Go on PATH the hottest functions (cumulative) are printed too; compare a floor
    phase's file with the operator phase's (``go tool pprof -top -diff_base=FLOOR OP``) to see
    what the operator costs beyond the same objects' creation.
    """
    directory: Path | None = args.apiserver_profile
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    params = {"seconds": str(max(1, round(args.apiserver_profile_seconds)))}

    async def apiserver() -> bytes | str:
        async with api.session.get("/debug/pprof/profile", params=params) as resp:
            return await resp.read() if resp.status == 200 else f"{resp.status}"

    async def controller_manager() -> bytes | str:
        url = getattr(args, "controller_manager_url", None)
        if url is None:
            return "not served"
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session,
            session.get(f"{url}/debug/pprof/profile", params=params, ssl=False) as resp,
        ):
            return await resp.read() if resp.status == 200 else f"{resp.status}"

    results = await asyncio.gather(apiserver(), controller_manager(), return_exceptions=True)
    go = shutil.which("go")
    for component, result in zip(("apiserver", "controller-manager"), results, strict=True):
        if not isinstance(result, bytes):
            print(f"no {component} profile: {result!r}")
            continue
        out = directory / f"{component}-{phase}.pb.gz"
        out.write_bytes(result)
        if go is None:
            print(f"{component} profile written to {out} (no Go on PATH to summarise it)")
            continue
        top = subprocess.run(
            [go, "tool", "pprof", "-top", "-cum", "-nodecount=30", str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        print(f"{component} profile {out} (hottest, cumulative):\n{top.stdout[-6000:]}", flush=True)


def start_profiler(op: OperatorProcess, out: Path) -> subprocess.Popen[bytes] | None:
    """Attach py-spy (if installed) to the operator, recording collapsed stacks."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("  (py-spy not installed: `pip install py-spy` to profile)")
        return None
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(op.proc.pid),
            "--format",
            "raw",
            "--rate",
            "200",
            "--nonblocking",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profiler(profiler: subprocess.Popen[bytes] | None, out: Path, top: int = 15) -> None:
    """Stop py-spy and print where the operator spent its samples (self and inclusive)."""
    if profiler is None:
        return
    profiler.send_signal(signal.SIGINT)
    try:
        profiler.wait(timeout=30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait()
    try:
        lines = out.read_text().splitlines()
    except OSError:
        print("  (py-spy wrote no profile)")
        return
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return
    print(f"  profile ({total} samples, {out}): top self time")
    for frame, count in own.most_common(top):
        print(f"    {100 * count / total:5.1f}%  {frame[:150]}")
    print("  top inclusive (dgd_operator / kopf / aiohttp frames)")
    shown = 0
    for frame, count in inclusive.most_common():
        if any(part in frame for part in ("dgd_operator", "kopf/", "aiohttp/")):
            print(f"    {100 * count / total:5.1f}%  {frame[:150]}")
            shown += 1
            if shown >= top:
                break


# ------------------------------------------------------------------------------------ main


def best_floor(floors: Mapping[int, PhaseResult]) -> int:
    """The concurrency at which the plain client created every child soonest."""
    return min(floors, key=lambda c: floors[c].children_s)


def reference_floor(
    children_s: float, ready_s: float, after: PhaseResult | None
) -> tuple[float, float]:
    """The floor's (all children, all ready) times that the ratios are taken against.

    The best floor of the sweep before the operator, or, with a floor run again after it, the
    mean of the two: a drift of the host's speed that is steady over the run then cancels.
    """
    if after is None:
        return children_s, ready_s
    return (children_s + after.children_s) / 2, (ready_s + after.ready_s) / 2


def verdict(ok: bool | None) -> str:
    """PASS / FAIL / n/a."""
    return "n/a " if ok is None else ("PASS" if ok else "FAIL")


async def bench(
    args: argparse.Namespace, kubeconfig: Path, work: Path, pids: Mapping[str, int]
) -> dict[str, Any]:
    """All phases; returns the results dictionary."""
    api = Api(credentials_from_kubeconfig(kubeconfig))
    local = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    op: OperatorProcess | None = None
    suffix = uuid.uuid4().hex[:5]
    op_ns = f"bench-op-{suffix}"
    floor_namespaces: list[str] = []
    names = dgd_names(args.dgds)
    sample = build_graph(
        parse_dgd(bench_dgd("x", op_ns)), op_ns, OperatorSettings().to_build_options()
    )
    per_dgd = len(sample)
    kinds = child_kinds(sample)
    result: dict[str, Any] = {
        "benchmark": "operator_scale",
        "dgds": args.dgds,
        "dgd_api": args.dgd_api,
        "services_per_dgd": len(bench_dgd("x", "x")["spec"]["services"]),
        "children_per_dgd": per_dgd,
        "workers": args.workers,
        "create_concurrency": args.create_concurrency,
    }
    floors: dict[int, PhaseResult] = {}
    floor_after: PhaseResult | None = None
    try:
        for concurrency in args.floor_concurrency:
            floor_ns = f"bench-floor{concurrency}-{suffix}"
            print(
                f"floor: plain client, {args.dgds} DGDs x {per_dgd} children, {concurrency} DGDs at a time ({floor_ns})",
                flush=True,
            )
            floor_namespaces.append(floor_ns)
            await create_namespace(api, floor_ns)
            floors[concurrency] = await floor_phase(
                api, floor_ns, names, args, concurrency, kinds, per_dgd, pids
            )
            print(
                f"  all children exist after {floors[concurrency].children_s:.2f}s; "
                f"all Deployments ready after {floors[concurrency].ready_s:.2f}s",
                flush=True,
            )
            gone = await delete_namespace(api, floor_ns, args.timeout)
            gone_text = f"{gone:.1f}s" if gone is not None else "still terminating"
            print(f"  floor namespace deleted ({gone_text})", flush=True)

        print(
            f"operator: {args.dgds} DGDs created at once (DGD_WORKERS={args.workers}) ({op_ns})",
            flush=True,
        )
        await create_namespace(api, op_ns)
        op = await start_operator(work, kubeconfig, op_ns, args.workers, "1")
        rss_start = op.peak_rss_mb()
        run = await operator_phase(api, op, local, op_ns, names, args, kinds, per_dgd, pids)
        assert run.operator is not None
        print(
            f"  all children exist after {run.children_s:.2f}s; every DGD Ready after {run.ready_s:.2f}s",
            flush=True,
        )

        print(f"steady state: {args.steady_seconds:g}s", flush=True)
        steady_api_before = await apiserver_counts(api)
        steady_events_before = await operator_events(api)
        # The selector's sanity check: the Created Event of every graph is found by it.
        print(f"  operator Events so far: {steady_events_before} ({len(names)} graphs)", flush=True)
        steady_before = await operator_metrics(local, op.metrics_url)
        await asyncio.sleep(args.steady_seconds)
        steady = (await operator_metrics(local, op.metrics_url)).minus(steady_before)
        steady_api = delta(steady_api_before, await apiserver_counts(api))
        steady_events = await operator_events(api) - steady_events_before
        rss_peak = op.peak_rss_mb()

        print(
            "restart: stop the operator, start it again, wait until it has resumed every DGD",
            flush=True,
        )
        op.stop()
        restart_api_before = await apiserver_counts(api)
        restart_events_before = await operator_events(api)
        began = time.monotonic()
        op = await start_operator(work, kubeconfig, op_ns, args.workers, "2")
        profiler = start_profiler(op, args.profile_restart) if args.profile_restart else None
        resumed = await settle(op, local, len(names), quiet=3.0)
        # The last 3 s of quiet are not resuming: the clock stops at the last counter change.
        resume_s = resumed.settled_at - began
        if profiler is not None and args.profile_restart is not None:
            stop_profiler(profiler, args.profile_restart)
        restart_api = delta(restart_api_before, await apiserver_counts(api))
        restart_events = await operator_events(api) - restart_events_before
        rss_restart = op.peak_rss_mb()

        if args.floor_after and floors:
            op.stop()
            op = None
            gone = await delete_namespace(api, op_ns, args.timeout)
            gone_text = f"{gone:.1f}s" if gone is not None else "still terminating"
            print(f"operator stopped, its namespace deleted ({gone_text})", flush=True)
            concurrency = best_floor(floors)
            floor_ns = f"bench-floorafter{concurrency}-{suffix}"
            print(
                f"floor again: plain client, {concurrency} DGDs at a time ({floor_ns})", flush=True
            )
            floor_namespaces.append(floor_ns)
            await create_namespace(api, floor_ns)
            floor_after = await floor_phase(
                api, floor_ns, names, args, concurrency, kinds, per_dgd, pids
            )
            print(
                f"  all children exist after {floor_after.children_s:.2f}s; "
                f"all Deployments ready after {floor_after.ready_s:.2f}s",
                flush=True,
            )
    finally:
        if op is not None:
            op.stop()
        if args.kubeconfig:
            for ns in (*floor_namespaces, op_ns):
                await delete_namespace(api, ns, 0)
        await local.close()
        await api.close()

    creation_writes = run.operator.total_writes()
    writes_per_dgd = creation_writes / args.dgds
    # Events are writes too and count in writes_per_dgd; shown apart because the issue also asks
    # for a create Event, which no status or child write can stand in for.
    event_writes = sum(n for what, n in run.operator.writes().items() if what.endswith(" events"))
    # The floor is the best the plain client did over the sweep: the fastest concurrency for
    # "all children exist" and, separately, for "all ready".
    best = best_floor(floors) if floors else None
    best_ready = min(floors, key=lambda c: floors[c].ready_s) if floors else None
    floor = floors[best] if best is not None else PhaseResult(math.nan, math.nan, {})
    floor_before_ready_s = floors[best_ready].ready_s if best_ready is not None else math.nan
    floor_children_s, floor_ready_s = reference_floor(
        floor.children_s, floor_before_ready_s, floor_after
    )
    ratio = run.children_s / floor_children_s
    ratio_ready = run.ready_s / floor_ready_s
    result.update(
        floor_sweep={
            str(c): {"children_s": f.children_s, "ready_s": f.ready_s} for c, f in floors.items()
        },
        floor_best_concurrency=best,
        floor_best_ready_concurrency=best_ready,
        floor_before_children_s=floor.children_s,
        floor_before_ready_s=floor_before_ready_s,
        floor_after=(
            None
            if floor_after is None
            else {"children_s": floor_after.children_s, "ready_s": floor_after.ready_s}
        ),
        floor_children_s=floor_children_s,
        floor_ready_s=floor_ready_s,
        ratio_to_floor_before=run.children_s / floor.children_s,
        ratio_to_floor_before_ready=run.ready_s / floor_before_ready_s,
        operator_children_s=run.children_s,
        operator_ready_s=run.ready_s,
        ratio_to_floor=ratio,
        ratio_to_floor_ready=ratio_ready,
        operator_writes=creation_writes,
        writes_per_dgd=writes_per_dgd,
        event_writes_per_dgd=event_writes / args.dgds,
        object_writes_per_dgd=(creation_writes - event_writes) / args.dgds,
        operator_writes_by_request=run.operator.writes(),
        operator_reads_by_verb={
            v: int(n)
            for (v, _r), n in run.operator.requests.items()
            if v not in OPERATOR_WRITE_VERBS and n
        },
        operator_reconciles=run.operator.reconciles,
        operator_reconcile_seconds_total=run.operator.reconcile_seconds,
        apiserver_by_verb={"floor": by_verb(floor.apiserver), "operator": by_verb(run.apiserver)},
        cpu_seconds={"floor": floor.cpu, "operator": run.cpu},
        apiserver_mean_latency_ms={
            "floor": mean_latency_ms(floor.apiserver),
            "operator": mean_latency_ms(run.apiserver),
        },
        apiserver_operator_only_writes={
            "floor": operator_only_writes(floor.apiserver),
            "operator": operator_only_writes(run.apiserver),
        },
        steady_seconds=args.steady_seconds,
        steady_state_writes=steady.total_writes(),
        steady_state_writes_by_request=steady.writes(),
        steady_state_apiserver_operator_only_writes=operator_only_writes(steady_api),
        steady_state_operator_events=steady_events,
        steady_state_apiserver_writes_by_verb=by_verb(steady_api, WRITE_VERBS),
        restart_resume_s=resume_s,
        restart_reconciles=resumed.reconciles,
        restart_writes=resumed.total_writes(),
        restart_writes_by_request=resumed.writes(),
        restart_apiserver_operator_only_writes=operator_only_writes(restart_api),
        restart_operator_events=restart_events,
        peak_rss_mb=max(rss_peak, rss_restart),
        rss_first_run_mb=rss_peak,
        rss_at_start_mb=rss_start,
        rss_after_restart_mb=rss_restart,
    )
    return result


def print_report(r: dict[str, Any]) -> None:
    """The human summary: a table and PASS/FAIL per target."""
    n, per = r["dgds"], r["children_per_dgd"]
    print()
    print(
        f"operator_scale: {n} DGDs x {r['services_per_dgd']} services ({per} children each), "
        f"written at {r.get('dgd_api', 'v1alpha1')}, workers={r['workers']}"
    )
    for c, f in r["floor_sweep"].items():
        print(
            f"  floor sweep: {c:>3} DGDs at a time: children {f['children_s']:.2f}s, ready {f['ready_s']:.2f}s"
        )
    print(
        f"  best floor: children at concurrency {r['floor_best_concurrency']}, "
        f"Ready at concurrency {r['floor_best_ready_concurrency']}"
    )
    after = r.get("floor_after")
    if after is not None:
        drift = after["children_s"] / r["floor_before_children_s"] - 1
        print(
            f"  floor again after the operator: children {after['children_s']:.2f}s, "
            f"ready {after['ready_s']:.2f}s (before: {r['floor_before_children_s']:.2f}s, "
            f"{r['floor_before_ready_s']:.2f}s; drift {drift:+.1%}); the floor below is their mean"
        )
        print(
            f"  ratios against the floor before alone: children {r['ratio_to_floor_before']:.2f}, "
            f"Ready {r['ratio_to_floor_before_ready']:.2f}"
        )
    print(f"  {'':32}{'floor':>10}{'operator':>10}{'ratio':>8}")
    print(
        f"  {'all children exist (s)':32}{r['floor_children_s']:10.2f}{r['operator_children_s']:10.2f}{r['ratio_to_floor']:8.2f}"
    )
    print(
        f"  {'all Ready (s)':32}{r['floor_ready_s']:10.2f}{r['operator_ready_s']:10.2f}{r['ratio_to_floor_ready']:8.2f}"
    )
    fv, ov = r["apiserver_by_verb"]["floor"], r["apiserver_by_verb"]["operator"]
    for verb in sorted(set(fv) | set(ov), key=lambda v: -(ov.get(v, 0) + fv.get(v, 0))):
        print(
            f"  {'API server ' + verb + ' (cluster-wide)':32}{fv.get(verb, 0):10d}{ov.get(verb, 0):10d}"
        )
    for phase in ("floor", "operator"):
        latency = ", ".join(
            f"{k} {v:.0f}" for k, v in sorted(r["apiserver_mean_latency_ms"][phase].items())
        )
        print(f"  API server mean latency ms, {phase} phase: {latency}")
    for phase in ("floor", "operator"):
        spent = ", ".join(f"{k} {v:.1f}" for k, v in r["cpu_seconds"][phase].items())
        print(f"  CPU seconds, {phase} phase: {spent}")
    print(
        f"  operator writes: {r['operator_writes']} ({r['writes_per_dgd']:.2f} per DGD) over {int(r['operator_reconciles'])} reconciles "
        f"(sum of reconcile wall time {r['operator_reconcile_seconds_total']:.1f}s)"
    )
    for what, count in r["operator_writes_by_request"].items():
        print(f"    {what:<48}{count:8d}  ({count / n:.2f} per DGD)")
    print(f"  operator reads: {r['operator_reads_by_verb']}")
    print(
        f"  steady state ({r['steady_seconds']:g}s): operator writes {r['steady_state_writes']} {r['steady_state_writes_by_request'] or ''}; "
        f"API server writes on operator-only resources {r['steady_state_apiserver_operator_only_writes'] or 0}; "
        f"operator Events {r['steady_state_operator_events']}"
    )
    print(
        f"  restart: resumed {n} DGDs in {r['restart_resume_s']:.2f}s; operator writes {r['restart_writes']} {r['restart_writes_by_request'] or ''}; "
        f"API server writes on operator-only resources {r['restart_apiserver_operator_only_writes'] or 0}; "
        f"operator Events {r['restart_operator_events']}"
    )
    print(f"  restart: {1000 * r['restart_resume_s'] / n:.1f} ms per DGD")
    print(
        f"  operator peak RSS (VmHWM): {r['peak_rss_mb']:.0f} MiB (at start {r['rss_at_start_mb']:.0f} MiB; "
        f"first run {r['rss_first_run_mb']:.0f} MiB, after restart {r['rss_after_restart_mb']:.0f} MiB)"
    )
    print("targets:")
    print(
        f"  {verdict(r['ratio_to_floor'] <= TARGET_RATIO)}  time to all children / floor = {r['ratio_to_floor']:.2f} (<= {TARGET_RATIO})"
    )
    print(
        f"  {verdict(r['ratio_to_floor_ready'] <= TARGET_RATIO)}  time to all Ready / floor = {r['ratio_to_floor_ready']:.2f} (<= {TARGET_RATIO})"
    )
    # The create Event is asked for by its own issue; no child or status write can stand in for
    # it, so it is held to its own bound instead of eating the status writes' allowance.
    # Plus what the namespace needs once, whatever its number of graphs (its shared
    # ServiceAccount for the graphs' pods).
    namespace_writes = NAMESPACE_WIDE_WRITES / r["dgds"]
    writes_ok = (
        r["object_writes_per_dgd"] <= per + TARGET_EXTRA_WRITES + namespace_writes
        and r["event_writes_per_dgd"] <= TARGET_EVENTS_PER_DGD
    )
    print(
        f"  {verdict(writes_ok)}  writes per DGD creation = {r['writes_per_dgd']:.2f}: "
        f"object/status {r['object_writes_per_dgd']:.2f} (<= children + {TARGET_EXTRA_WRITES} = "
        f"{per + TARGET_EXTRA_WRITES}, + {NAMESPACE_WIDE_WRITES} per namespace), Events {r['event_writes_per_dgd']:.2f} "
        f"(<= {TARGET_EVENTS_PER_DGD})"
    )
    print(
        f"  {verdict(r['steady_state_writes'] == 0 and not r['steady_state_apiserver_operator_only_writes'] and not r['steady_state_operator_events'])}  zero writes in steady state ({r['steady_state_writes']})"
    )
    print(
        f"  {verdict(r['restart_writes'] == 0 and not r['restart_apiserver_operator_only_writes'] and not r['restart_operator_events'])}  zero writes after restart ({r['restart_writes']})"
    )
    print(
        f"  {verdict(r['restart_resume_s'] <= TARGET_RESUME_S if n >= 1000 else None)}  restart resume "
        f"{r['restart_resume_s']:.1f}s (< {TARGET_RESUME_S:g}s at 1000 DGDs; compare ms per DGD across N)"
    )
    rss_ok = r["peak_rss_mb"] <= TARGET_RSS_MB if n >= TARGET_RSS_AT else None
    note = (
        ""
        if n >= TARGET_RSS_AT
        else f" (target is at {TARGET_RSS_AT} DGDs; run --dgds {TARGET_RSS_AT})"
    )
    print(
        f"  {verdict(rss_ok)}  peak RSS = {r['peak_rss_mb']:.0f} MiB (<= {TARGET_RSS_MB:g} MiB at {TARGET_RSS_AT} DGDs){note}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit code 0 unless it could not run."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--dgds", type=int, default=200, help="DGDs to create (default 200)")
    parser.add_argument(
        "--dgd-api",
        choices=sorted(DGD_APIS),
        default="v1beta1",
        help="the version the graphs are written in (default v1beta1, Dynamo 1.5's API; at "
        "v1alpha1 each status write also costs two conversion-webhook calls)",
    )
    parser.add_argument(
        "--steady-seconds", type=float, default=60.0, help="steady-state window (default 60)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=OperatorSettings().workers,
        help="DGD_WORKERS of the operator (default: the operator's default)",
    )
    parser.add_argument(
        "--floor-concurrency",
        type=lambda text: [int(c) for c in text.split(",") if c.strip()],
        default=[4, 16, 64],
        help="DGDs the plain client handles at a time, swept; the best is the floor "
        "(default 4,16,64; empty: no floor)",
    )
    parser.add_argument(
        "--floor-after",
        action="store_true",
        help="after the restart, stop the operator, delete its namespace and run the floor again "
        "at the sweep's best concurrency; the ratios are then against the mean of both floors, "
        "which cancels a steady drift of the host's speed over the run (adds a floor phase and "
        "a namespace deletion: ~11 min at 1,000 graphs)",
    )
    parser.add_argument(
        "--create-concurrency", type=int, default=32, help="DGD creates in flight (default 32)"
    )
    parser.add_argument(
        "--kubeconfig", type=Path, help="use this cluster instead of starting a local control plane"
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="per-wait timeout in seconds (default 900)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="OUT",
        help="py-spy the operator during creation (collapsed stacks to OUT)",
    )
    parser.add_argument(
        "--profile-restart",
        type=Path,
        metavar="OUT",
        help="py-spy the operator while it resumes after the restart (collapsed stacks to OUT)",
    )
    parser.add_argument(
        "--apiserver-profile",
        type=Path,
        metavar="DIR",
        help="profile kube-apiserver's and kube-controller-manager's CPU from the start of "
        "each phase (pprof files in DIR; local control plane only)",
    )
    parser.add_argument(
        "--apiserver-profile-seconds",
        type=float,
        default=60.0,
        help="length of each control-plane profile (default 60)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    args = parser.parse_args(argv)
    # A SIGTERM unwinds like an error, so the operator and the control plane are stopped (the
    # default action killed the benchmark alone and left the operator running).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    work = Path(tempfile.mkdtemp(prefix="dgd-bench-scale-"))
    plane: ControlPlane | None = None
    try:
        if args.kubeconfig:
            kubeconfig = args.kubeconfig
        else:
            bins = binaries.find()
            if bins is None:
                print(
                    "Kubernetes binaries are not built: run `make kube-bins` first", file=sys.stderr
                )
                return 1
            nodes, gpus = cluster_shape(args.dgds)
            plane = ControlPlane(
                work / "cp",
                binaries=bins,
                nodes=nodes,
                gpus_per_node=gpus,
                kubelet="process",
                profiling=args.apiserver_profile is not None,
            )
            began = time.monotonic()
            plane.start(timeout=180)
            plane.install_crds()
            kubeconfig = plane.kubeconfig
            args.controller_manager_url = plane.controller_manager_url
            print(
                f"local control plane: {nodes} simulated nodes x {gpus} GPUs, up in {time.monotonic() - began:.1f}s",
                flush=True,
            )
        pids = {"benchmark": os.getpid()}
        if plane is not None:
            pids.update({proc.name: proc.pid for proc in plane.processes()})
        result = asyncio.run(bench(args, kubeconfig, work, pids))
    finally:
        if plane is not None:
            leftovers = plane.stop()
            if leftovers:
                print(f"could not stop: {leftovers}", file=sys.stderr)
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        print(f"results written to {args.json}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
