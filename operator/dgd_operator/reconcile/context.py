"""What the reconcile steps share: the services they use and the state of one reconcile.

Every step has the same signature, `async def step(ctx: ReconcileContext) -> StepResult`. A
step reads what earlier steps left on the context (observed objects, the typed DGD, the built
children) and adds its own findings for the steps after it and for `calculate_status`.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dgd_operator.api.constants import EVENT_APPLY_FAILED, REASON_RECONCILE_FAILED
from dgd_operator.api.conversion import status_to_v1alpha1
from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.api.validation import Problem
from dgd_operator.builders.gang import PodGroupApi
from dgd_operator.builders.graph import GraphPlan
from dgd_operator.builders.options import BuildOptions
from dgd_operator.controllerkit.kubeapi import InvalidError, KubeAPI
from dgd_operator.reconcile.groups import GroupPolicy
from dgd_operator.reconcile.restart import RestartPlan
from dgd_operator.reconcile.rollout import RolloutPlan
from dgd_operator.reconcile.state import ControllerState, DgdMemory, Key
from dgd_operator.reconcile.sync import ChildKey, DigestMemo, Manifest
from dgd_operator.reconcile.view import ClusterView
from dgd_operator.settings import OperatorSettings


class RejectedError(Exception):
    """A DGD the operator cannot act on until its spec changes (invalid or refused)."""

    def __init__(self, problems: Sequence[Problem], *, reason: str, event_reason: str) -> None:
        self.problems = list(problems)
        self.reason = reason
        self.event_reason = event_reason
        super().__init__("; ".join(str(p) for p in self.problems))


class PostEvent(Protocol):
    """Posts an Event about the graph being reconciled (never raises)."""

    def __call__(
        self, body: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> Awaitable[None]:
        """Post one Event on `body`."""
        ...


@dataclass
class Services:
    """What the steps act through: the API, the watch cache, memory and configuration."""

    client: KubeAPI
    view: ClusterView
    state: ControllerState
    settings: OperatorSettings
    options: BuildOptions
    group_policy: GroupPolicy
    post_event: PostEvent
    wall_clock: Callable[[], datetime.datetime]


@dataclass
class StepResult:
    """What a step asks of the controller: stop here, and/or look again after a delay."""

    stop: bool = False
    requeue_after: float | None = None


CONTINUE = StepResult()


@dataclass
class Outcome:
    """What one reconcile did (for logs and tests)."""

    applied: int = 0
    deleted: int = 0
    status_written: bool = False


@dataclass
class ReconcileContext:
    """The state of one reconcile of one DGD, filled in step by step."""

    key: Key
    body: Mapping[str, Any]
    memory: DgdMemory
    services: Services
    live_children: list[Mapping[str, Any]] = field(default_factory=list)
    """Live children owned by this DGD (or carrying no owner), from the watch cache."""
    live: dict[ChildKey, Mapping[str, Any]] = field(default_factory=dict)
    dgd: DynamoGraphDeployment | None = None
    """The validated DGD, with adapter-owned replica counts already copied in."""
    spec_fingerprint: str = ""
    """`steps.observe.spec_fingerprint` of the body (a build input)."""
    adapter_replicas: dict[str, int] = field(default_factory=dict)
    """Service -> the replica count its adapter owns, where it differs from the spec's."""
    restart: RestartPlan | None = None
    worker_hash: str | None = None
    """The current worker generation (None: the graph's workers update in place)."""
    rollout: RolloutPlan | None = None
    """The managed worker rollout of this reconcile (`steps.rollout`)."""
    graph: GraphPlan | None = None
    desired: list[Manifest] = field(default_factory=list)
    """Children to apply (adapters excluded)."""
    desired_adapters: list[Manifest] = field(default_factory=list)
    digests: DigestMemo = field(default_factory=lambda: DigestMemo(()))
    """Hashes of the built children (remembered with the build)."""
    replica_patch: dict[str, dict[str, int]] = field(default_factory=dict)
    """`spec.services.<svc>.replicas` to write back into the DGD (adapter-owned counts)."""
    scaled_by_adapter: list[str] = field(default_factory=list)
    """Messages of the Scaled Events the replica patch earns."""
    adapter_statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Adapter name -> the status to write on it."""
    fresh: dict[ChildKey, Mapping[str, Any]] = field(default_factory=dict)
    """Children as the API server returned them from our applies in this reconcile."""
    notices: list[tuple[str, str]] = field(default_factory=list)
    """(Event reason, message) to post together with the status write."""
    status_notices: list[tuple[str, str]] = field(default_factory=list)
    """(Event reason, message) to post only when the status write happened (restart progress)."""
    groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Per service: `status.services.<svc>.groups` entries."""
    group_failures: list[str] = field(default_factory=list)
    inference_pool_api: bool = False
    """Whether the cluster serves InferencePools (looked up only for graphs with an EPP)."""
    pod_group_api: PodGroupApi | None = None
    """Where the cluster serves PodGroups (None: not served; groups are placed pod by pod)."""
    placement: list[dict[str, Any]] = field(default_factory=list)
    """Status conditions about placement (`GangPlacement`), as wire-form dicts."""
    placement_waits: list[str] = field(default_factory=list)
    """Why multinode groups wait for the scheduler (added to the Ready message)."""
    outcome: Outcome = field(default_factory=Outcome)

    @property
    def namespace(self) -> str:
        """The DGD's namespace."""
        return self.key[0]

    @property
    def name(self) -> str:
        """The DGD's name."""
        return self.key[1]

    @property
    def uid(self) -> str:
        """The DGD's uid."""
        return str((self.body.get("metadata") or {}).get("uid"))

    @property
    def generation(self) -> int | None:
        """The DGD's `metadata.generation`."""
        value = (self.body.get("metadata") or {}).get("generation")
        return value if isinstance(value, int) else None

    @functools.cached_property
    def status_view(self) -> dict[str, Any] | None:
        """The live status (v1beta1, as stored and watched) in the v1alpha1 shape the typed
        status calculation reads (`components` -> `services`); None when there is none.
        Converted once per reconcile (the body does not change during one); read-only."""
        status = self.body.get("status")
        if not isinstance(status, Mapping):
            return None
        annotations = (self.body.get("metadata") or {}).get("annotations")
        return status_to_v1alpha1(
            dict(status), annotations if isinstance(annotations, dict) else None
        )

    def built(self) -> DynamoGraphDeployment:
        """The validated DGD (steps after `observe` may rely on it)."""
        assert self.dgd is not None, "observe step did not run"
        return self.dgd

    async def apply(self, manifest: Manifest) -> Manifest:
        """Server-side apply one object; an object the API server refuses rejects the graph."""
        return await self._write(self.services.client.apply, manifest)

    async def create(self, manifest: Manifest) -> Manifest:
        """POST one new object; an object the API server refuses rejects the graph."""
        return await self._write(self.services.client.create, manifest)

    async def _write(
        self, write: Callable[[Manifest], Awaitable[Manifest]], manifest: Manifest
    ) -> Manifest:
        try:
            return await write(manifest)
        except InvalidError as exc:
            what = f"{manifest['kind']}/{manifest['metadata']['name']}"
            raise RejectedError(
                [Problem(what, f"the API server refused it: {exc.message}")],
                reason=REASON_RECONCILE_FAILED,
                event_reason=EVENT_APPLY_FAILED,
            ) from exc

    async def event(self, type_: str, reason: str, message: str) -> None:
        """Post an Event about this DGD."""
        await self.services.post_event(self.body, type_, reason, message)


Step = Callable[[ReconcileContext], Awaitable[StepResult]]


def step_condition(
    kind: str, status: str, reason: str, message: str, generation: int | None
) -> dict[str, Any]:
    """A status condition a step reports (`ReconcileContext.placement`), as the API writes it."""
    condition: dict[str, Any] = {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition
