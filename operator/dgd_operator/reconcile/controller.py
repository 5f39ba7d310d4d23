"""The DGD controller: a level-based reconcile of ordered steps, fed by kopf's watch streams.

Shape (controller-runtime style, on `dgd_operator.controllerkit`):
- kopf watches DGDs and every child kind once and keeps them in in-memory indexes; every
  event only enqueues the owning DGD's key (`handlers.py`);
- a pool of workers takes keys from a de-duplicating `WorkQueue` and runs `reconcile`: the
  steps of `STEPS` in order (observe → discover_placement → discover_inference_pool → worker_generation → build →
  rollout → prerequisites → adapters → children → placement → groups → restart), then the pure `calculate_status` and the one status writer. Nothing is written
  before the build succeeded; a converged graph costs no write.

kopf's change-detecting handlers (create/update/resume) are deliberately not used: they keep
per-object progress and diff-base annotations on the DGD, which costs writes on every cycle
and on operator restarts. Retries are ours: transient API errors re-queue the key with
exponential backoff; an invalid spec is reported once per generation and not retried until
the spec changes (the equivalent of `kopf.PermanentError`).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from dgd_operator import metrics
from dgd_operator.api.constants import EVENT_RECONCILE_FAILED
from dgd_operator.builders.options import BuildOptions
from dgd_operator.builders.shared import event_manifest
from dgd_operator.controllerkit.events import EventRecorder
from dgd_operator.controllerkit.informer import uid_of
from dgd_operator.controllerkit.kubeapi import (
    ConflictError,
    KubeAPI,
    Manifest,
    TransientError,
)
from dgd_operator.controllerkit.queue import WorkQueue
from dgd_operator.controllerkit.workers import Backoff, WorkerPool
from dgd_operator.reconcile.context import Outcome, ReconcileContext, RejectedError, Services, Step
from dgd_operator.reconcile.groups import GroupPolicy
from dgd_operator.reconcile.report import rejection_mark, report, report_rejected
from dgd_operator.reconcile.state import ControllerState, Key
from dgd_operator.reconcile.status import status_differs
from dgd_operator.reconcile.steps.adapters import adapters
from dgd_operator.reconcile.steps.build import build
from dgd_operator.reconcile.steps.children import children
from dgd_operator.reconcile.steps.groups import groups
from dgd_operator.reconcile.steps.inference_pool import discover_inference_pool
from dgd_operator.reconcile.steps.observe import observe
from dgd_operator.reconcile.steps.placement import discover_placement, placement
from dgd_operator.reconcile.steps.prerequisites import prerequisites
from dgd_operator.reconcile.steps.restart import restart
from dgd_operator.reconcile.steps.rollout import rollout, worker_generation
from dgd_operator.reconcile.sync import ChildKey
from dgd_operator.reconcile.view import ClusterView
from dgd_operator.settings import OperatorSettings

logger = logging.getLogger("dgd_operator.reconcile")


def _without_write_marks(body: Mapping[str, Any]) -> dict[str, Any]:
    """A DGD without what any status write changes: its status, resourceVersion and field
    ownership."""
    meta = {
        k: v
        for k, v in (body.get("metadata") or {}).items()
        if k not in ("resourceVersion", "managedFields")
    }
    return {**{k: v for k, v in body.items() if k != "status"}, "metadata": meta}


STEPS: tuple[Step, ...] = (
    observe,
    discover_placement,
    discover_inference_pool,
    worker_generation,
    build,
    rollout,
    prerequisites,
    adapters,
    children,
    placement,
    groups,
    restart,
)
MAX_TRANSIENT_BACKOFF = 60.0
MAX_UNEXPECTED_BACKOFF = 300.0


def group_policy(settings: OperatorSettings) -> GroupPolicy:
    """The multinode group restart budget and backoff the settings ask for."""
    return GroupPolicy(
        budget=settings.group_restart_budget,
        window=settings.group_restart_window,
        backoff=settings.group_restart_backoff,
        backoff_cap=settings.group_restart_backoff_cap,
    )


class Controller:
    """Owns the work queue, the workers, the memory and the per-DGD reconcile."""

    def __init__(
        self,
        settings: OperatorSettings,
        *,
        options: BuildOptions | None = None,
        state: ControllerState | None = None,
        wall_clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.settings = settings
        self.options = options or settings.to_build_options()
        self.group_policy = group_policy(settings)
        self.state = state or ControllerState()
        self.wall_clock = wall_clock
        self.client: KubeAPI | None = None
        self.view: ClusterView | None = None
        self.queue: WorkQueue[Key] = WorkQueue()
        self.backoff: Backoff[Key] = Backoff()
        self.pool = WorkerPool(
            self.queue,
            self.process,
            size=settings.workers,
            name="dgd-reconcile",
            on_take=self._queue_gauge,
        )
        self.reconciles = 0
        """Reconciles finished so far (any outcome), for tests and the probe."""
        self.gauges = metrics.ManagedObjectsGauge()
        self._instance = socket.gethostname()

    # ----------------------------------------------------------------------------- lifecycle

    def bind_view(self, view: ClusterView) -> None:
        """Attach the watched state (kopf's indexes reach us through the handlers)."""
        self.view = view

    async def start(self, client: KubeAPI) -> None:
        """Start the worker pool with `client` (called from kopf's startup handler)."""
        self.client = client
        self.pool.start()

    async def stop(self) -> None:
        """Stop the workers, cancel pending retries and close the client (idempotent)."""
        await self.pool.stop()
        self.queue.close()
        if self.client is not None:
            await self.client.close()

    def enqueue(self, key: Key) -> None:
        """Ask for `key` to be reconciled soon (coalesced with pending requests)."""
        self.queue.add(key)
        self._queue_gauge()

    def is_own_status_echo(
        self, key: Key, previous: Mapping[str, Any], current: Mapping[str, Any]
    ) -> bool:
        """True when `current` is `previous` with only our last status write applied.

        Such an event needs no reconcile: the reconcile that wrote the status saw the same
        spec, labels and annotations, and anything else that changed since has an event of
        its own. A status changed by anyone else, or any other change, is reconciled.
        """
        memory = self.state.graphs.get(key)
        written = None if memory is None else memory.written_status
        if written is None or memory is None or memory.uid != uid_of(current):
            return False
        if status_differs(current.get("status"), written):
            return False
        return _without_write_marks(previous) == _without_write_marks(current)

    def child_deleted(self, namespace: str, key: ChildKey) -> None:
        """A child is gone: forget what we applied to it, so it is re-created if still desired."""
        self.state.child_deleted(namespace, key)

    def shared_deleted(self, namespace: str, kind: str, name: str) -> None:
        """A namespace-wide object is gone: look it up again on the next reconcile."""
        self.state.shared_checked.forget((namespace, kind, name))

    def _queue_gauge(self) -> None:
        metrics.QUEUE_DEPTH.set(len(self.queue))

    # ----------------------------------------------------------------------------- workers

    async def process(self, key: Key) -> None:
        """Reconcile `key`; never raises: failures are logged, counted and retried with backoff."""
        started = time.perf_counter()
        try:
            await self.reconcile(key)
        except ConflictError as exc:
            metrics.RECONCILE_ERRORS.labels(reason="conflict").inc()
            metrics.RECONCILES.labels(result="conflict").inc()
            logger.info("dgd %s/%s: conflict, retrying: %s", *key, exc)
            self.queue.add_after(
                key, self.backoff.next_delay(key, base=0.5, cap=MAX_TRANSIENT_BACKOFF)
            )
        except TransientError as exc:
            metrics.RECONCILE_ERRORS.labels(reason="transient").inc()
            metrics.RECONCILES.labels(result="transient").inc()
            logger.warning("dgd %s/%s: API unavailable, retrying: %s", *key, exc)
            self.queue.add_after(
                key, self.backoff.next_delay(key, base=1.0, cap=MAX_TRANSIENT_BACKOFF)
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            metrics.RECONCILE_ERRORS.labels(reason="unexpected").inc()
            metrics.RECONCILES.labels(result="unexpected").inc()
            logger.exception("dgd %s/%s: reconcile failed unexpectedly, retrying", *key)
            first = not self.backoff.is_failing(key)
            self.queue.add_after(
                key, self.backoff.next_delay(key, base=2.0, cap=MAX_UNEXPECTED_BACKOFF)
            )
            body = self.view.dgd(key) if self.view is not None else None
            if first and body is not None and self.client is not None:
                # Once per failure streak, so a persistent bug does not flood the namespace.
                await self.post_event(
                    body, "Warning", EVENT_RECONCILE_FAILED, f"reconcile failed, retrying: {exc!r}"
                )
        else:
            metrics.RECONCILES.labels(result="success").inc()
            self.backoff.reset(key)
        finally:
            self.reconciles += 1
            metrics.RECONCILE_DURATION.observe(time.perf_counter() - started)
            if self.view is not None:
                self.gauges.refresh(self.view.object_counts)

    async def post_event(
        self, body: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        """Post an Event on a DGD (failures are logged, never fatal)."""
        assert self.client is not None
        await EventRecorder(self.client, self._event_manifest).post(body, type_, reason, message)

    def _event_manifest(
        self, involved: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> Manifest:
        return event_manifest(
            involved, type_, reason, message, instance=self._instance, now=self.wall_clock()
        )

    # ----------------------------------------------------------------------------- reconcile

    async def reconcile(self, key: Key) -> Outcome:
        """Bring one DGD's children and status in line with its spec (level-based)."""
        assert self.view is not None and self.client is not None, "controller not started"
        body = self.view.dgd(key)
        if body is None:
            self.state.forget(key)
            self.backoff.reset(key)
            self.queue.forget(key)
            return Outcome()
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return Outcome()  # children go with the DGD through garbage collection
        memory = self.state.graph(key, str(meta.get("uid")))
        if memory.rejected_mark == rejection_mark(body):
            return Outcome()  # reported already; wait for a spec change
        memory.rejected_mark = None
        services = Services(
            self.client, self.view, self.state, self.settings, self.options, self.group_policy,
            self.post_event, self.wall_clock,
        )  # fmt: skip
        ctx = ReconcileContext(key, body, memory, services)
        try:
            return await self._run_steps(ctx)
        except RejectedError as rejected:
            await report_rejected(ctx, rejected)
            return Outcome()

    async def _run_steps(self, ctx: ReconcileContext) -> Outcome:
        requeue: list[float] = []
        for step in STEPS:
            result = await step(ctx)
            if result.requeue_after is not None:
                requeue.append(result.requeue_after)
            if result.stop:
                break
        write = await report(ctx)
        if write.retry_after is not None:
            requeue.append(write.retry_after)
        if requeue:
            self.queue.add_after(ctx.key, min(requeue))
        return ctx.outcome
