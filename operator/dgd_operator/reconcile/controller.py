"""The DGD controller: a level-based reconcile loop fed by kopf's watch streams.

Shape (controller-runtime style, on top of kopf):
- kopf watches DGDs and every child kind once (one list+watch per kind, no per-DGD polling)
  and keeps them in in-memory indexes; every event only enqueues the owning DGD's key;
- a small pool of workers takes keys from a de-duplicating `WorkQueue` and runs `reconcile`,
  which reads the DGD and its children from the indexes (no GETs), builds the desired objects,
  applies only what changed (server-side apply), prunes children of removed services, and
  writes status only when it changed.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dgd_operator import metrics
from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.api.validation import Problem, update_problems, validate_dgd
from dgd_operator.build.components import EPP_SERVICE_ACCOUNT, PLANNER_SERVICE_ACCOUNT
from dgd_operator.build.errors import BuildError
from dgd_operator.build.graph import GraphPlan, plan_graph
from dgd_operator.build.options import BuildOptions
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
from dgd_operator.reconcile.queue import WorkQueue
from dgd_operator.reconcile.readiness import (
    WORKLOAD_KINDS,
    graph_readiness,
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

MAX_TRANSIENT_BACKOFF = 60.0
MAX_UNEXPECTED_BACKOFF = 300.0


class ClusterView(Protocol):
    """Read access to the watched state (kopf indexes in production, dicts in tests)."""

    def dgd(self, key: Key) -> Mapping[str, Any] | None:
        """The live DGD, or None when it does not exist."""

    def children(self, key: Key) -> list[Mapping[str, Any]]:
        """Every live object labelled as a child of the DGD."""

    def pull_secrets(self, namespace: str) -> dict[str, tuple[str, ...]]:
        """Registry host to image pull Secret names discovered in `namespace`."""

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
        self.written_accepted: dict[Key, str] = {}
        self.patched_replicas: dict[tuple[Key, str], int] = {}
        self.adapter_status_written: dict[tuple[str, str], dict[str, Any]] = {}
        self.shared_accounts: set[tuple[str, str]] = set()
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
        self.written_accepted.pop(key, None)
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
        live: dict[ChildKey, Mapping[str, Any]] = {child_key(obj): obj for obj in live_children}

        await self._ensure_shared_accounts(namespace, dgd)
        dgd = await self._sync_adapter_replicas(key, body, dgd, live)
        restart = self._plan_restart(dgd, body, live_children)
        graph = self._build(dgd, namespace, restart.annotations)
        desired = [obj for obj in graph.objects if obj["kind"] != DGDSA_KIND]
        desired_adapters = [obj for obj in graph.objects if obj["kind"] == DGDSA_KIND]

        for obj in desired:
            if (obj["apiVersion"], obj["kind"]) not in _WATCHED:
                current = await self.client.get(obj["apiVersion"], obj["kind"], namespace, obj["metadata"]["name"])
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
        for action in plan.apply:
            result = await self._apply(key, action.manifest)
            ck = child_key(action.manifest)
            rmeta = result.get("metadata") or {}
            records[ck] = AppliedRecord(action.digest, rmeta.get("uid"), rmeta.get("generation"))
            fresh[ck] = result
            outcome.applied += 1
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
        wanted_adapters = set()
        for adapter in desired_adapters:
            ck = child_key(adapter)
            wanted_adapters.add(ck)
            if ck in live or ck in records:
                continue
            result = await self._apply(key, adapter)
            rmeta = result.get("metadata") or {}
            records[ck] = AppliedRecord(manifest_hash(adapter), rmeta.get("uid"), rmeta.get("generation"))
            outcome.applied += 1
            await self._event(body, "Normal", c.EVENT_ADAPTER_CREATED, f"created {DGDSA_KIND}/{ck[2]} with {adapter['spec']['replicas']} replicas")

        deleted: list[str] = []
        for doomed in plan.delete:
            if await self._delete(namespace, doomed):
                deleted.append(f"{doomed['kind']}/{doomed['metadata']['name']}")
        for ck, existing in sorted(live.items()):
            if (
                ck[1] == DGDSA_KIND
                and ck not in wanted_adapters
                and is_owned_by(existing, uid)
                and await self._delete(namespace, existing)
            ):
                await self._event(body, "Normal", c.EVENT_ADAPTER_DELETED, f"deleted {DGDSA_KIND}/{ck[2]}")
        outcome.deleted = len(deleted)

        if created:
            await self._event(body, "Normal", c.EVENT_CREATED, "created " + ", ".join(created))
        if updated:
            await self._event(body, "Normal", c.EVENT_UPDATED, "updated " + ", ".join(updated))
        if scaled:
            await self._event(body, "Normal", c.EVENT_SCALED, "scaled " + ", ".join(scaled))
        if deleted:
            await self._event(body, "Normal", c.EVENT_DELETED, "deleted " + ", ".join(deleted))

        view = {(ck[1], ck[2]): obj for ck, obj in live.items()}
        view.update({(ck[1], ck[2]): obj for ck, obj in fresh.items()})
        services = {svc: list(w.names) for svc, w in graph.services.items()}
        readiness = graph_readiness(desired, view, services)
        previous_status = body.get("status") or {}
        status: dict[str, Any] = {
            "state": readiness.state,
            "conditions": [
                ready_condition(
                    ready=readiness.ready,
                    reason=readiness.reason,
                    message=readiness.message,
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
        outcome.status_written = await self._write_status(key, body, status)
        if outcome.status_written:
            if readiness.ready and previous_status.get("state") != c.STATE_SUCCESSFUL:
                await self._event(body, "Normal", c.EVENT_READY, readiness.message)
            await self._restart_events(body, restart, previous_status.get("restart"))
        await self._record_accepted(key, body)
        return outcome

    # ----------------------------------------------------------------------------- steps

    def _validate(self, body: Mapping[str, Any]) -> DynamoGraphDeployment:
        """Parse and validate the DGD, including Dynamo's update rules against the last accepted spec."""
        meta = body.get("metadata") or {}
        doc = {k: copy.deepcopy(v) for k, v in body.items() if k != "status"}
        accepted = (meta.get("annotations") or {}).get(c.ANNOTATION_ACCEPTED_SPEC)
        creating = accepted is None and meta.get("generation") in (None, 1)
        result = validate_dgd(doc, creating=creating)
        if result.errors or result.dgd is None:
            problems = result.errors or [Problem("spec", "not a valid DynamoGraphDeployment")]
            raise RejectedError(problems, reason=c.REASON_INVALID_SPEC, event_reason=c.EVENT_INVALID_SPEC)
        if accepted:
            try:
                old = validate_dgd({**doc, "spec": json.loads(accepted)}, creating=False).dgd
            except ValueError:
                old = None
            if old is not None:
                problems = update_problems(old, result.dgd)
                if problems:
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
        except NotImplementedError as exc:
            raise RejectedError([Problem("", str(exc))], reason=c.REASON_INVALID_SPEC, event_reason=c.EVENT_INVALID_SPEC) from exc

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
        return True

    async def _record_accepted(self, key: Key, body: Mapping[str, Any]) -> None:
        """Remember the accepted spec on the DGD so update rules survive operator restarts."""
        assert self.client is not None
        accepted = json.dumps(body.get("spec") or {}, sort_keys=True, separators=(",", ":"))
        current = ((body.get("metadata") or {}).get("annotations") or {}).get(c.ANNOTATION_ACCEPTED_SPEC)
        if current == accepted or self.written_accepted.get(key) == accepted:
            return
        namespace, name = key
        await self.client.merge_patch(
            DGD_API_VERSION, DGD_KIND, namespace, name, {"metadata": {"annotations": {c.ANNOTATION_ACCEPTED_SPEC: accepted}}}
        )
        self.written_accepted[key] = accepted

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


def rejection_mark(body: Mapping[str, Any]) -> str:
    """What must change before a rejected DGD is looked at again: uid, generation (the spec),
    labels and annotations (they steer rendering too), never status or our own annotation."""
    meta = body.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != c.ANNOTATION_ACCEPTED_SPEC}
    return json.dumps(
        [meta.get("uid"), meta.get("generation"), meta.get("labels") or {}, annotations], sort_keys=True
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
