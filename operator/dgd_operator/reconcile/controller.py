"""The DGD controller: a level-based reconcile loop fed by kopf's watch streams.

Shape (controller-runtime style, on top of kopf):
- kopf watches DGDs and every child kind once (one list+watch per kind, no per-DGD polling)
  and keeps them in in-memory indexes; every event only enqueues the owning DGD's key;
- a small pool of workers takes keys from a de-duplicating `WorkQueue` and runs `reconcile`,
  which reads the DGD and its children from the indexes (no GETs), builds the desired objects,
  applies only what changed (server-side apply, concurrently in two waves: what pods use,
  then the workloads; `apply_waves`), prunes children of removed services,
  restarts multinode groups whose ranks failed as a whole (`groups.py`), and writes status
  only when it changed.

kopf's change-detecting handlers (create/update/resume) are deliberately not used: they keep
per-object progress and diff-base annotations on the DGD, which costs writes on every cycle
and on operator restarts. Retries are ours: transient API errors re-queue the key with
exponential backoff; an invalid spec is reported once per generation and not retried until
the spec changes (the equivalent of `kopf.PermanentError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import datetime
import json
import logging
import socket
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from dgd_operator import metrics
from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.api.validation import Problem, validate_dgd
from dgd_operator.builders.components import EPP_SERVICE_ACCOUNT, PLANNER_SERVICE_ACCOUNT
from dgd_operator.builders.errors import BuildError
from dgd_operator.builders.graph import GraphPlan, plan_graph
from dgd_operator.builders.names import label_value_problems
from dgd_operator.builders.options import BuildOptions
from dgd_operator.kube import (
    ApiError,
    ConflictError,
    InvalidError,
    KubeClient,
    ResourceKind,
    TransientError,
    resource_kind,
)
from dgd_operator.reconcile import constants as c
from dgd_operator.reconcile.groups import (
    GROUP_FAILED,
    GroupMemory,
    GroupPolicy,
    GroupSpec,
    group_specs,
    plan_group,
)
from dgd_operator.reconcile.mpi import mpi_ssh_secret
from dgd_operator.reconcile.queue import WorkQueue
from dgd_operator.reconcile.readiness import (
    WORKLOAD_KINDS,
    graph_readiness,
    is_progress_only,
    object_readiness,
    ready_condition,
    service_of,
    status_differs,
)
from dgd_operator.reconcile.restart import RestartPlan, RestartRequest, plan_restart
from dgd_operator.reconcile.scaling import (
    DGDSA_API_VERSION,
    DGDSA_KIND,
    adapter_name,
    adapter_replicas,
    adapter_status,
)
from dgd_operator.reconcile.sync import (
    AppliedRecord,
    ApplyAction,
    ChildKey,
    Manifest,
    child_key,
    is_owned_by,
    manifest_hash,
    plan_sync,
)
from dgd_operator.settings import OperatorSettings

logger = logging.getLogger("dgd_operator.reconcile")

DGD_API_VERSION = "nvidia.com/v1alpha1"
DGD_KIND = "DynamoGraphDeployment"
DGD_RESOURCE = resource_kind(DGD_API_VERSION, DGD_KIND)

# Every kind the builders may emit that the operator watches (children found by our labels).
# Kinds outside this list (Secrets: too sensitive and too many to watch) are read with a GET
# before they are compared.
WATCHED_CHILD_KINDS: tuple[ResourceKind, ...] = tuple(
    resource_kind(api_version, kind)
    for api_version, kind in (
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("v1", "Service"),
        ("v1", "ConfigMap"),
        ("v1", "ServiceAccount"),
        ("v1", "PersistentVolumeClaim"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("networking.k8s.io/v1", "Ingress"),
        (DGDSA_API_VERSION, DGDSA_KIND),
    )
)
_WATCHED = frozenset((rk.api_version, rk.kind) for rk in WATCHED_CHILD_KINDS)

Key = tuple[str, str]  # (namespace, DGD name)
T = TypeVar("T")

MAX_TRANSIENT_BACKOFF = 60.0
MAX_UNEXPECTED_BACKOFF = 300.0
STATUS_PROGRESS_INTERVAL_SECONDS = 1.0
"""At most one progress-only status write per DGD per interval (state changes are not delayed)."""


class ClusterView(Protocol):
    """Read access to the watched state (kopf indexes in production, dicts in tests)."""

    def dgd(self, key: Key) -> Mapping[str, Any] | None:
        """The live DGD, or None when it does not exist."""

    def children(self, key: Key) -> list[Mapping[str, Any]]:
        """Every live object labelled as a child of the DGD."""

    def pull_secrets(self, namespace: str) -> dict[str, tuple[str, ...]]:
        """Registry host to image pull Secret names discovered in `namespace`."""

    def group_pods(self, key: Key) -> list[Mapping[str, Any]]:
        """Pods of the DGD's multinode groups (summaries, see `groups.pod_summary`)."""

    def object_counts(self) -> dict[str, int]:
        """Number of watched DGDs and children, by kind."""


class RejectedError(Exception):
    """A DGD the operator cannot act on until its spec changes (invalid or refused)."""

    def __init__(self, problems: Sequence[Problem], *, reason: str, event_reason: str) -> None:
        self.problems = list(problems)
        self.reason = reason
        self.event_reason = event_reason
        super().__init__("; ".join(str(p) for p in self.problems))


@dataclass
class Outcome:
    """What one reconcile did (for logs and tests)."""

    applied: int = 0
    deleted: int = 0
    status_written: bool = False


def now_iso() -> str:
    """Current UTC time in Kubernetes' RFC 3339 form."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Controller:
    """Owns the work queue, the workers and the per-DGD reconcile."""

    def __init__(
        self,
        settings: OperatorSettings,
        *,
        client: KubeClient | None = None,
        options: BuildOptions | None = None,
    ) -> None:
        self.settings = settings
        self.options = options or settings.to_build_options()
        self.client = client
        self.view: ClusterView | None = None
        self.queue: WorkQueue[Key] = WorkQueue()
        self.records: dict[str, dict[ChildKey, AppliedRecord]] = {}
        """Per namespace: what we last applied to each child (see `sync.needs_apply`)."""
        self.rejected: dict[Key, str] = {}
        """DGDs reported invalid, with the `rejection_mark` they had (retry only when it changes)."""
        self.failures: dict[Key, int] = {}
        self.written_status: dict[Key, dict[str, Any]] = {}
        self.status_written_at: dict[Key, float] = {}
        """Monotonic time of our last status write per DGD (coalesces progress-only updates)."""
        self.patched_replicas: dict[tuple[Key, str], int] = {}
        self.adapter_status_written: dict[tuple[str, str], dict[str, Any]] = {}
        self.shared_accounts: set[tuple[str, str]] = set()
        self.shared_account_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.mpi_secrets: set[str] = set()
        """Namespaces where the MPI SSH Secret is known to exist (checked once per process)."""
        self.groups: dict[Key, dict[tuple[str, int], GroupMemory]] = {}
        """Per DGD: restart bookkeeping of each multinode group (see `groups.py`)."""
        self.group_policy = GroupPolicy(
            budget=int(getattr(settings, "group_restart_budget", 5)),
            window=float(getattr(settings, "group_restart_window", 1800.0)),
            backoff=float(getattr(settings, "group_restart_backoff", 10.0)),
            backoff_cap=float(getattr(settings, "group_restart_backoff_cap", 300.0)),
        )
        self.reconciles = 0
        """Reconciles finished so far (any outcome), for tests and the probe."""
        self._gauges_at = 0.0
        self._gauge_kinds: set[str] = set()
        self._workers: list[asyncio.Task[None]] = []
        self._instance = socket.gethostname()

    # ----------------------------------------------------------------------------- lifecycle

    async def start(self, client: KubeClient) -> None:
        """Start the worker pool (called from kopf's startup handler)."""
        self.client = client
        if self._workers:
            return
        for index in range(self.settings.workers):
            self._workers.append(asyncio.create_task(self._worker(), name=f"dgd-reconcile-{index}"))

    async def stop(self) -> None:
        """Stop the workers and close the client."""
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self.queue.close()
        if self.client is not None:
            await self.client.close()

    def bind_view(self, view: ClusterView) -> None:
        """Attach the watched state (kopf indexes are only reachable from handler kwargs)."""
        self.view = view

    def enqueue(self, key: Key) -> None:
        """Ask for `key` to be reconciled soon (coalesced with pending requests)."""
        self.queue.add(key)
        metrics.QUEUE_DEPTH.set(len(self.queue))

    def child_deleted(self, namespace: str, obj: Mapping[str, Any]) -> None:
        """Forget what we applied to a child that is gone, so it is re-created if still desired."""
        self.records.get(namespace, {}).pop(child_key(obj), None)

    # ----------------------------------------------------------------------------- workers

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            metrics.QUEUE_DEPTH.set(len(self.queue))
            try:
                await self.process(key)
            finally:
                self.queue.done(key)

    async def process(self, key: Key) -> None:
        """Reconcile `key`; never raises: failures are logged, counted and retried with backoff."""
        started = time.perf_counter()
        try:
            await self.reconcile(key)
        except ConflictError as exc:
            metrics.RECONCILE_ERRORS.labels(reason="conflict").inc()
            logger.info("dgd %s/%s: conflict, retrying: %s", *key, exc)
            self._retry(key, base=0.5, cap=MAX_TRANSIENT_BACKOFF)
        except TransientError as exc:
            metrics.RECONCILE_ERRORS.labels(reason="transient").inc()
            logger.warning("dgd %s/%s: API unavailable, retrying: %s", *key, exc)
            self._retry(key, base=1.0, cap=MAX_TRANSIENT_BACKOFF)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            metrics.RECONCILE_ERRORS.labels(reason="unexpected").inc()
            logger.exception("dgd %s/%s: reconcile failed unexpectedly, retrying", *key)
            first = key not in self.failures
            self._retry(key, base=2.0, cap=MAX_UNEXPECTED_BACKOFF)
            body = self.view.dgd(key) if self.view is not None else None
            if first and body is not None and self.client is not None:
                # Once per failure streak, so a persistent bug does not flood the namespace.
                await self._event(body, "Warning", c.EVENT_RECONCILE_FAILED, f"reconcile failed, retrying: {exc!r}")
        else:
            self.failures.pop(key, None)
        finally:
            self.reconciles += 1
            metrics.RECONCILE_DURATION.observe(time.perf_counter() - started)
            self._update_gauges()

    def _update_gauges(self) -> None:
        """Refresh the managed-objects gauge from the watch cache (at most once a second)."""
        now = time.monotonic()
        if now - self._gauges_at < 1.0 or self.view is None:
            return
        self._gauges_at = now
        counts = self.view.object_counts()
        for kind in set(counts) | self._gauge_kinds:
            metrics.MANAGED_OBJECTS.labels(kind=kind).set(counts.get(kind, 0))
        self._gauge_kinds |= set(counts)

    def _retry(self, key: Key, *, base: float, cap: float) -> None:
        attempt = self.failures.get(key, 0)
        self.failures[key] = attempt + 1
        self.queue.add_after(key, min(cap, base * (2**attempt)))

    def _forget(self, key: Key) -> None:
        self.rejected.pop(key, None)
        self.failures.pop(key, None)
        self.written_status.pop(key, None)
        self.status_written_at.pop(key, None)
        self.groups.pop(key, None)
        self.queue.forget(key)

    # ----------------------------------------------------------------------------- reconcile

    async def reconcile(self, key: Key) -> Outcome:
        """Bring one DGD's children and status in line with its spec (level-based)."""
        assert self.view is not None and self.client is not None, "controller not started"
        body = self.view.dgd(key)
        if body is None:
            self._forget(key)
            return Outcome()
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return Outcome()  # children go with the DGD through garbage collection
        uid = meta.get("uid")
        if self.rejected.get(key) == rejection_mark(body):
            return Outcome()  # reported already; wait for a spec change
        self.rejected.pop(key, None)
        live_children = [
            obj for obj in self.view.children(key) if is_owned_by(obj, str(uid)) or not _owner_refs(obj)
        ]
        try:
            return await self._reconcile_valid(key, body, live_children)
        except RejectedError as rejected:
            await self._report_rejected(key, body, rejected)
            return Outcome()

    async def _reconcile_valid(
        self, key: Key, body: Mapping[str, Any], live_children: list[Mapping[str, Any]]
    ) -> Outcome:
        assert self.client is not None
        namespace = key[0]
        meta = body["metadata"]
        uid = str(meta.get("uid"))
        generation = meta.get("generation")
        dgd = self._validate(body)
        label_problems = [Problem(path, message) for path, message in label_value_problems(namespace, dgd)]
        if label_problems:
            raise RejectedError(label_problems, reason=c.REASON_INVALID_SPEC, event_reason=c.EVENT_INVALID_SPEC)
        live: dict[ChildKey, Mapping[str, Any]] = {child_key(obj): obj for obj in live_children}

        await self._ensure_shared_accounts(namespace, dgd)
        await self._ensure_mpi_secret(namespace, dgd)
        dgd = await self._sync_adapter_replicas(key, body, dgd, live)
        restart = self._plan_restart(dgd, body, live_children)
        graph = self._build(dgd, namespace, restart.annotations)
        desired = [obj for obj in graph.objects if obj["kind"] != DGDSA_KIND]
        desired_adapters = [obj for obj in graph.objects if obj["kind"] == DGDSA_KIND]

        unwatched = [obj for obj in desired if (obj["apiVersion"], obj["kind"]) not in _WATCHED]
        found = await run_all(
            [self.client.get(obj["apiVersion"], obj["kind"], namespace, obj["metadata"]["name"]) for obj in unwatched]
        )
        for obj, current in zip(unwatched, found, strict=True):
            if current is not None:
                live[child_key(obj)] = current

        records = self.records.setdefault(namespace, {})
        regular_live = {ck: obj for ck, obj in live.items() if ck[1] != DGDSA_KIND}
        plan = plan_sync(desired, regular_live, records, uid)
        outcome = Outcome()
        fresh: dict[ChildKey, Mapping[str, Any]] = {}
        created: list[str] = []
        updated: list[str] = []
        scaled: list[str] = []
        for wave in apply_waves(plan.apply):
            # Children of one wave go out concurrently; workloads wait for the wave before
            # them, so no pod starts before its ServiceAccount, ConfigMap or PVC exists.
            # Every apply of the wave is awaited; applies that succeeded are recorded, and
            # the first failure (in plan order) then fails the reconcile as before.
            results = await asyncio.gather(
                *(self._apply(key, action.manifest) for action in wave),
                return_exceptions=True,
            )
            for action, result in zip(wave, results, strict=True):
                if isinstance(result, BaseException):
                    continue
                ck = child_key(action.manifest)
                rmeta = result.get("metadata") or {}
                records[ck] = AppliedRecord(action.digest, rmeta.get("uid"), rmeta.get("generation"))
                fresh[ck] = result
                outcome.applied += 1
            raise_first(results)
        for action in plan.apply:
            label = f"{action.manifest['kind']}/{action.manifest['metadata']['name']}"
            if action.why == "create":
                created.append(label)
                continue
            change = _scale_change(action.manifest, action.live)
            if change is not None:
                scaled.append(f"{label} {change}")
            if change is None or not _only_replicas_changed(action.manifest, action.live):
                updated.append(f"{label} ({'edited outside the operator' if action.why == 'drift' else 'spec changed'})")

        # Adapters are created once and then owned by their scaler (see scaling.py).
        wanted_adapters = {child_key(adapter) for adapter in desired_adapters}
        new_adapters = [a for a in desired_adapters if child_key(a) not in live and child_key(a) not in records]
        adapter_results = await asyncio.gather(*(self._apply(key, a) for a in new_adapters), return_exceptions=True)
        for adapter, result in zip(new_adapters, adapter_results, strict=True):
            if isinstance(result, BaseException):
                continue
            ck = child_key(adapter)
            rmeta = result.get("metadata") or {}
            records[ck] = AppliedRecord(manifest_hash(adapter), rmeta.get("uid"), rmeta.get("generation"))
            outcome.applied += 1
            await self._event(body, "Normal", c.EVENT_ADAPTER_CREATED, f"created {DGDSA_KIND}/{ck[2]} with {adapter['spec']['replicas']} replicas")
        raise_first(adapter_results)

        gone = await run_all([self._delete(namespace, doomed) for doomed in plan.delete])
        deleted = [
            f"{doomed['kind']}/{doomed['metadata']['name']}" for doomed, was_deleted in zip(plan.delete, gone, strict=True) if was_deleted
        ]
        doomed_adapters = [
            existing
            for ck, existing in sorted(live.items())
            if ck[1] == DGDSA_KIND and ck not in wanted_adapters and is_owned_by(existing, uid)
        ]
        for existing, was_deleted in zip(
            doomed_adapters, await run_all([self._delete(namespace, a) for a in doomed_adapters]), strict=True
        ):
            if was_deleted:
                await self._event(body, "Normal", c.EVENT_ADAPTER_DELETED, f"deleted {DGDSA_KIND}/{existing['metadata']['name']}")
        outcome.deleted = len(deleted)

        # What changed is told in one Event per kind of change, posted together with the
        # status write below (not one after another before it).
        notices = [
            (reason, f"{verb} " + ", ".join(labels))
            for reason, verb, labels in (
                (c.EVENT_CREATED, "created", created),
                (c.EVENT_UPDATED, "updated", updated),
                (c.EVENT_SCALED, "scaled", scaled),
                (c.EVENT_DELETED, "deleted", deleted),
            )
            if labels
        ]

        view = {(ck[1], ck[2]): obj for ck, obj in live.items()}
        view.update({(ck[1], ck[2]): obj for ck, obj in fresh.items()})
        services = {svc: list(w.names) for svc, w in graph.services.items()}
        readiness = graph_readiness(desired, view, services)
        previous_status = body.get("status") or {}
        groups, group_failures = await self._sync_groups(key, body, desired, view)
        for svc, entries in groups.items():
            if svc in readiness.services:
                readiness.services[svc]["groups"] = entries
        state, reason, message = readiness.state, readiness.reason, readiness.message
        if group_failures:
            state, reason, message = c.STATE_FAILED, c.REASON_GROUP_FAILED, "; ".join(group_failures)
        status: dict[str, Any] = {
            "state": state,
            "conditions": [
                ready_condition(
                    ready=readiness.ready and not group_failures,
                    reason=reason,
                    message=message,
                    previous=previous_status.get("conditions") or [],
                    now=now_iso(),
                    observed_generation=generation,
                )
            ],
            "observedGeneration": generation,
            "services": readiness.services,
        }
        if restart.status is not None:
            status["restart"] = restart.status
        written, *posted = await asyncio.gather(
            self._write_status(key, body, status),
            *(self._event(body, "Normal", reason, text) for reason, text in notices),
            return_exceptions=True,
        )
        raise_first([written, *posted])  # `_event` never raises an API error; the status write may
        outcome.status_written = written is True
        if outcome.status_written:
            # No Event on becoming ready: the Ready condition's transition already says it
            # (`kubectl get dgd` shows it), and an Event per DGD is one more write at scale.
            await self._restart_events(body, restart, previous_status.get("restart"))
        return outcome

    # ----------------------------------------------------------------------------- steps

    def _validate(self, body: Mapping[str, Any]) -> DynamoGraphDeployment:
        """Parse and validate the stored DGD.

        Dynamo's update rules (immutable service set, backend, topology) belong to admission
        (`dgd_operator.webhook`); the reconcile acts on whatever spec is stored, so a removed
        service has its children deleted and a changed framework or node count rebuilds them.
        """
        meta = body.get("metadata") or {}
        doc = {k: copy.deepcopy(v) for k, v in body.items() if k != "status"}
        result = validate_dgd(doc, creating=meta.get("generation") in (None, 1))
        if result.errors or result.dgd is None:
            problems = result.errors or [Problem("spec", "not a valid DynamoGraphDeployment")]
            raise RejectedError(problems, reason=c.REASON_INVALID_SPEC, event_reason=c.EVENT_INVALID_SPEC)
        return result.dgd

    def _build(self, dgd: DynamoGraphDeployment, namespace: str, restarts: Mapping[str, str]) -> GraphPlan:
        options = self.options
        if self.settings.image_pull_secret_discovery and self.view is not None:
            options = dataclasses.replace(options, image_pull_secrets=self.view.pull_secrets(namespace))
        try:
            return plan_graph(dgd, namespace, options, restart_annotations=restarts)
        except BuildError as exc:
            raise RejectedError([Problem(exc.path, exc.message)], reason=c.REASON_INVALID_SPEC, event_reason=c.EVENT_INVALID_SPEC) from exc

    async def _apply(self, key: Key, manifest: Manifest) -> Manifest:
        assert self.client is not None
        try:
            return await self.client.apply(manifest)
        except InvalidError as exc:
            what = f"{manifest['kind']}/{manifest['metadata']['name']}"
            raise RejectedError(
                [Problem(what, f"the API server refused it: {exc.message}")],
                reason=c.REASON_RECONCILE_FAILED,
                event_reason=c.EVENT_APPLY_FAILED,
            ) from exc

    async def _delete(self, namespace: str, obj: Mapping[str, Any]) -> bool:
        assert self.client is not None
        meta = obj["metadata"]
        self.records.get(namespace, {}).pop(child_key(obj), None)
        return await self.client.delete(obj["apiVersion"], obj["kind"], namespace, meta["name"], uid=meta.get("uid"))

    async def _ensure_shared_accounts(self, namespace: str, dgd: DynamoGraphDeployment) -> None:
        """Create the namespace-wide planner/EPP ServiceAccounts (and RoleBindings) pods run as.

        They are shared by every DGD of the namespace, so they carry no owner and no DGD label,
        and are never deleted by the operator. Checked once per namespace and process.
        """
        assert self.client is not None
        types = {spec.component_type for spec in dgd.spec.services.values()}
        for component_type, account, role in (
            ("planner", PLANNER_SERVICE_ACCOUNT, self.settings.planner_cluster_role_name),
            ("epp", EPP_SERVICE_ACCOUNT, self.settings.epp_cluster_role_name),
        ):
            if component_type not in types or (namespace, account) in self.shared_accounts:
                continue
            # Several workers reconcile graphs of one namespace at once: one creates, the
            # others wait and then find it done, instead of all applying the same objects.
            lock = self.shared_account_locks.setdefault((namespace, account), asyncio.Lock())
            async with lock:
                if (namespace, account) in self.shared_accounts:
                    continue
                for manifest in shared_account_objects(namespace, account, role):
                    if await self.client.get(manifest["apiVersion"], manifest["kind"], namespace, manifest["metadata"]["name"]) is None:
                        await self._apply((namespace, ""), manifest)
                self.shared_accounts.add((namespace, account))

    async def _sync_adapter_replicas(
        self,
        key: Key,
        body: Mapping[str, Any],
        dgd: DynamoGraphDeployment,
        live: Mapping[ChildKey, Mapping[str, Any]],
    ) -> DynamoGraphDeployment:
        """Copy adapter replicas into the DGD (the adapter owns them) and refresh adapter status."""
        assert self.client is not None
        namespace, name = key
        uid = str(body["metadata"].get("uid"))
        patch: dict[str, Any] = {}
        for svc, spec in sorted(dgd.spec.services.items()):
            if spec.scaling_adapter is None or not spec.scaling_adapter.enabled:
                continue
            adapter = live.get((DGDSA_API_VERSION, DGDSA_KIND, adapter_name(name, svc)))
            if adapter is None or not is_owned_by(adapter, uid):
                continue
            wanted = adapter_replicas(adapter)
            if wanted is None:
                continue
            current = spec.replicas if spec.replicas is not None else 1
            if wanted != current:
                spec.replicas = wanted
                if self.patched_replicas.get((key, svc)) != wanted:
                    patch[svc] = {"replicas": wanted}
                    self.patched_replicas[(key, svc)] = wanted
                    await self._event(
                        body, "Normal", c.EVENT_SCALED,
                        f"service {svc} scaled from {current} to {wanted} replicas by {DGDSA_KIND}/{adapter_name(name, svc)}",
                    )
            status = adapter_status(adapter, dgd_name=name, service=svc, replicas=wanted, now=now_iso())
            ident = (namespace, adapter_name(name, svc))
            if status is not None and self.adapter_status_written.get(ident) != status:
                await self.client.merge_patch(
                    DGDSA_API_VERSION, DGDSA_KIND, namespace, adapter_name(name, svc), {"status": status}, subresource="status"
                )
                self.adapter_status_written[ident] = status
        if patch:
            await self.client.merge_patch(DGD_API_VERSION, DGD_KIND, namespace, name, {"spec": {"services": patch}})
        return dgd

    async def _ensure_mpi_secret(self, namespace: str, dgd: DynamoGraphDeployment) -> None:
        """Create the MPI SSH key Secret TensorRT-LLM multinode pods mount, once, if missing.

        Like Dynamo, any multinode service asks for it. The Secret is namespace-wide (shared
        by every DGD of the namespace): no owner, never rotated, never deleted by us. Checked
        with one GET per namespace and process; a concurrent creator wins (409 is fine).
        """
        assert self.client is not None
        name = self.options.mpi_ssh_secret_name
        if not name or namespace in self.mpi_secrets:
            return
        if not any(spec.is_multinode for spec in dgd.spec.services.values()):
            return
        if await self.client.get("v1", "Secret", namespace, name) is None:
            manifest = await asyncio.to_thread(mpi_ssh_secret, namespace, name)
            try:
                await self.client.create(manifest)
            except ConflictError:
                pass  # created meanwhile by someone else: theirs is as good
            else:
                logger.info("created MPI SSH Secret %s/%s", namespace, name)
        self.mpi_secrets.add(namespace)

    async def _sync_groups(
        self,
        key: Key,
        body: Mapping[str, Any],
        desired: Sequence[Mapping[str, Any]],
        live: Mapping[tuple[str, str], Mapping[str, Any]],
    ) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
        """Restart failed multinode groups as a whole; their status entries and failures."""
        assert self.view is not None and self.client is not None
        specs = group_specs(desired)
        memories = self.groups.setdefault(key, {})
        if not specs:
            memories.clear()
            return {}, []
        namespace = key[0]
        previous = (body.get("status") or {}).get("services") or {}
        pods_by_group: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
        for pod in self.view.group_pods(key):
            labels = (pod.get("metadata") or {}).get("labels") or {}
            try:
                ident = (str(labels[c.LABEL_COMPONENT]), int(labels[c.LABEL_GROUP_INDEX]))
            except (KeyError, ValueError):
                continue
            pods_by_group.setdefault(ident, []).append(pod)
        now = time.time()
        entries: dict[str, list[dict[str, Any]]] = {}
        failures: list[str] = []
        for spec in specs:
            ident = (spec.service, spec.index)
            memory = memories.get(ident)
            if memory is None:
                memory = memories[ident] = GroupMemory.from_status(_previous_group(previous, spec))
            workloads = tuple(_identity(live.get(("StatefulSet", name))) for name in spec.workloads)
            decision = plan_group(memory, spec, pods_by_group.get(ident, []), workloads, self.group_policy, now)
            if decision.delete:
                await self._restart_group(body, spec, memory, decision.delete, decision.reason)
            if decision.exhausted:
                metrics.RECONCILE_ERRORS.labels(reason="group_restart_budget").inc()
                await self._event(body, "Warning", c.EVENT_GROUP_FAILED, decision.reason)
            if decision.requeue_after is not None:
                self.queue.add_after(key, decision.requeue_after)
            entries.setdefault(spec.service, []).append(memory.status(spec))
            if memory.phase == GROUP_FAILED and memory.failed_reason:
                failures.append(memory.failed_reason)
        wanted = {(spec.service, spec.index) for spec in specs}
        for ident in set(memories) - wanted:
            del memories[ident]
        logger.debug("dgd %s/%s: groups %s", namespace, key[1], entries)
        return entries, failures

    async def _restart_group(
        self, body: Mapping[str, Any], spec: GroupSpec, memory: GroupMemory, pods: Sequence[Any], reason: str
    ) -> None:
        """Delete every pod of a group (uid preconditions); the StatefulSets recreate them."""
        assert self.client is not None
        namespace = str((body.get("metadata") or {}).get("namespace"))
        for pod in pods:
            await self.client.delete("v1", "Pod", namespace, pod.name, uid=pod.uid)
        budget = self.group_policy.budget
        logger.warning("restarting multinode group %s (restart %d, budget %d): %s", spec.name, memory.restarts, budget, reason)
        await self._event(
            body, "Warning", c.EVENT_GROUP_RESTART,
            f"restarting multinode group {spec.name} ({len(memory.restart_times)} of {budget} restarts in the budget window): {reason}",
        )

    def _plan_restart(
        self, dgd: DynamoGraphDeployment, body: Mapping[str, Any], live_children: Iterable[Mapping[str, Any]]
    ) -> RestartPlan:
        services = sorted(dgd.spec.services)
        workloads: dict[str, list[Mapping[str, Any]]] = {}
        for obj in live_children:
            if obj.get("kind") in WORKLOAD_KINDS:
                svc = service_of(obj)
                if svc is not None:
                    workloads.setdefault(svc, []).append(obj)
        live_ids: dict[str, str] = {}
        for svc, objs in workloads.items():
            ids = sorted({_restart_id(obj) for obj in objs} - {""})
            if ids:
                live_ids[svc] = ids[-1] if len(ids) > 1 else ids[0]
        request: RestartRequest | None = None
        spec_restart = dgd.spec.restart
        if spec_restart is not None:
            strategy = spec_restart.strategy
            request = RestartRequest(
                id=spec_restart.id,
                parallel=strategy is not None and strategy.type == "Parallel",
                order=tuple(strategy.order) if strategy is not None else (),
            )
        done = {
            svc: bool(objs)
            and request is not None
            and all(_restart_id(obj) == request.id and object_readiness(obj).ready for obj in objs)
            for svc, objs in workloads.items()
        }
        previous = (body.get("status") or {}).get("restart")
        return plan_restart(request, services, live_ids, done, previous)

    async def _restart_events(
        self, body: Mapping[str, Any], plan: RestartPlan, previous: Mapping[str, Any] | None
    ) -> None:
        if plan.status is None or plan.status == previous:
            return
        before: Mapping[str, Any] = previous or {}
        restart_id = plan.status.get("observedID")
        if plan.started and before.get("observedID") != restart_id:
            await self._event(body, "Normal", c.EVENT_RESTART_STARTED, f"restart {restart_id} started")
        if plan.stamped:
            await self._event(body, "Normal", c.EVENT_RESTART_STARTED, f"restart {restart_id}: restarting {', '.join(plan.stamped)}")
        if plan.status.get("phase") == c.RESTART_COMPLETED and before.get("phase") != c.RESTART_COMPLETED:
            await self._event(body, "Normal", c.EVENT_RESTART_COMPLETED, f"restart {restart_id} completed")

    async def _write_status(self, key: Key, body: Mapping[str, Any], status: dict[str, Any]) -> bool:
        """Server-side apply the status subresource, only when it differs from the live one."""
        assert self.client is not None
        current = body.get("status") or {}
        if not status_differs(current, status):
            return False
        remembered = self.written_status.get(key)
        if remembered is not None and not status_differs(remembered, status):
            return False  # our previous write has not reached the watch cache yet
        if is_progress_only(remembered if remembered is not None else current, status):
            # Replica counts move pod by pod; write such progress at most once per interval
            # (the latest wins, via a delayed reconcile). Transitions are written at once.
            elapsed = time.monotonic() - self.status_written_at.get(key, float("-inf"))
            if elapsed < STATUS_PROGRESS_INTERVAL_SECONDS:
                self.queue.add_after(key, STATUS_PROGRESS_INTERVAL_SECONDS - elapsed)
                return False
        namespace, name = key
        await self.client.apply(
            {
                "apiVersion": DGD_API_VERSION,
                "kind": DGD_KIND,
                "metadata": {"name": name, "namespace": namespace},
                "status": status,
            },
            subresource="status",
        )
        self.written_status[key] = status
        self.status_written_at[key] = time.monotonic()
        return True

    async def _report_rejected(self, key: Key, body: Mapping[str, Any], rejected: RejectedError) -> None:
        """`state: failed`, `Ready=False` naming the fields, one Warning Event; children untouched."""
        meta = body.get("metadata") or {}
        self.rejected[key] = rejection_mark(body)
        metrics.RECONCILE_ERRORS.labels(reason="invalid").inc()
        message = str(rejected)
        logger.warning("dgd %s/%s rejected: %s", *key, message)
        previous = body.get("status") or {}
        status: dict[str, Any] = {
            "state": c.STATE_FAILED,
            "conditions": [
                ready_condition(
                    ready=False,
                    reason=rejected.reason,
                    message=message,
                    previous=previous.get("conditions") or [],
                    now=now_iso(),
                    observed_generation=meta.get("generation"),
                )
            ],
        }
        for kept in ("observedGeneration", "services", "restart"):
            if kept in previous:
                status[kept] = previous[kept]
        try:
            written = await self._write_status(key, body, status)
        except ApiError as exc:
            self.rejected.pop(key, None)
            raise TransientError(exc.status, exc.reason, exc.message) from exc
        if written:
            await self._event(body, "Warning", rejected.event_reason, message)

    async def _event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Post a Kubernetes Event on the DGD; failures are logged, never fatal."""
        assert self.client is not None
        meta = body.get("metadata") or {}
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name')}.", "namespace": meta.get("namespace")},
            "involvedObject": {
                "apiVersion": DGD_API_VERSION,
                "kind": DGD_KIND,
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "dgd-operator"},
            "reportingComponent": "dgd-operator",
            "reportingInstance": self._instance,
            "firstTimestamp": now[:19] + "Z",
            "lastTimestamp": now[:19] + "Z",
            "eventTime": now,
            "action": reason,
            "count": 1,
        }
        try:
            await self.client.create(event)
        except ApiError as exc:
            logger.warning("could not post event %s on %s: %s", reason, meta.get("name"), exc)


def apply_waves(actions: Sequence[ApplyAction]) -> list[list[ApplyAction]]:
    """Split applies into waves: everything else first, then the workloads (pods) that use it."""
    support = [a for a in actions if a.manifest.get("kind") not in WORKLOAD_KINDS]
    workloads = [a for a in actions if a.manifest.get("kind") in WORKLOAD_KINDS]
    return [wave for wave in (support, workloads) if wave]


def raise_first(results: Iterable[object]) -> None:
    """Raise the first exception among `gather(..., return_exceptions=True)` results, if any."""
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def run_all(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Await every call concurrently; results in order, or the first failure (in order) once all
    are done. Nothing is left running and no exception goes unretrieved."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    raise_first(results)
    return [result for result in results if not isinstance(result, BaseException)]


def rejection_mark(body: Mapping[str, Any]) -> str:
    """What must change before a rejected DGD is looked at again: uid, generation (the spec),
    labels and annotations (they steer rendering too), never status."""
    meta = body.get("metadata") or {}
    return json.dumps(
        [meta.get("uid"), meta.get("generation"), meta.get("labels") or {}, meta.get("annotations") or {}],
        sort_keys=True,
    )


def shared_account_objects(namespace: str, account: str, cluster_role: str | None) -> list[Manifest]:
    """A namespace-wide ServiceAccount and, when a ClusterRole is configured, its RoleBinding."""
    labels = {c.LABEL_MANAGED_BY: c.MANAGED_BY}
    objects: list[Manifest] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": namespace, "labels": dict(labels)},
        }
    ]
    if cluster_role:
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": f"{account}-binding", "namespace": namespace, "labels": dict(labels)},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
            }
        )
    return objects


def _owner_refs(obj: Mapping[str, Any]) -> list[Any]:
    return list((obj.get("metadata") or {}).get("ownerReferences") or [])


def _restart_id(obj: Mapping[str, Any]) -> str:
    template = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return str((template.get("annotations") or {}).get(c.ANNOTATION_RESTART_AT) or "")


def _scale_change(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> str | None:
    if live is None or desired.get("kind") not in WORKLOAD_KINDS:
        return None
    want = (desired.get("spec") or {}).get("replicas", 1)
    have = (live.get("spec") or {}).get("replicas", 1)
    return None if want == have else f"{have} -> {want} replicas"


def _only_replicas_changed(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """True when the desired object differs from what we last applied only in `spec.replicas`."""
    if live is None:
        return False
    recorded = ((live.get("metadata") or {}).get("annotations") or {}).get(c.ANNOTATION_LAST_APPLIED_HASH)
    probe = copy.deepcopy(dict(desired))
    probe.setdefault("spec", {})["replicas"] = (live.get("spec") or {}).get("replicas", 1)
    return recorded == manifest_hash(probe)


def _identity(obj: Mapping[str, Any] | None) -> tuple[str, int]:
    """(uid, generation) of a live workload; a missing one is ("", 0)."""
    meta = (obj or {}).get("metadata") or {}
    generation = meta.get("generation")
    return str(meta.get("uid") or ""), generation if isinstance(generation, int) else 0


def _previous_group(services: Mapping[str, Any], spec: GroupSpec) -> Mapping[str, Any] | None:
    """The group's entry in the previous `status.services`, if any."""
    for entry in (services.get(spec.service) or {}).get("groups") or []:
        if entry.get("index") == spec.index:
            return dict(entry)
    return None
