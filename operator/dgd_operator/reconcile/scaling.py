"""DynamoGraphDeploymentScalingAdapter (DGDSA) replicas and status (pure, Dynamo §4.8).

A service with `scalingAdapter.enabled` gets a DGDSA `<dgd>-<lower(service)>`. The adapter owns
the service's replica count: HPA, KEDA, the planner or `kubectl scale dgdsa/...` change
`spec.replicas` through the scale subresource, and the operator copies it into the DGD. The
adapter is therefore created once (initialised with the service's replicas) and never
re-applied, so the operator never fights an autoscaler over `spec.replicas`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dgd_operator.api.constants import (
    DGDSA_KIND,
    GROUP_VERSION_V1BETA1,
    LABEL_COMPONENT,
    LABEL_GRAPH,
)
from dgd_operator.api.models import DynamoGraphDeployment
from dgd_operator.reconcile.sync import ChildKey, is_owned_by


def adapter_name(dgd_name: str, service: str) -> str:
    """`<dgd>-<lower(service)>`, Dynamo's adapter name."""
    return f"{dgd_name}-{service.lower()}"


def adapter_selector(dgd_name: str, service: str) -> str:
    """The pod label selector reported in the adapter's status (for HPA)."""
    return f"{LABEL_COMPONENT}={service},{LABEL_GRAPH}={dgd_name}"


def adapter_replicas(adapter: Mapping[str, Any]) -> int | None:
    """`spec.replicas` of a live adapter (None when missing or malformed)."""
    value = (adapter.get("spec") or {}).get("replicas")
    return value if isinstance(value, int) else None


def adapter_status(
    adapter: Mapping[str, Any], *, dgd_name: str, service: str, replicas: int, now: str
) -> dict[str, Any] | None:
    """The status to write on `adapter`, or None when its current status is already right.

    `lastScaleTime` moves only when the reported replica count changes.
    """
    current = adapter.get("status") or {}
    selector = adapter_selector(dgd_name, service)
    if current.get("replicas") == replicas and current.get("selector") == selector:
        return None
    status: dict[str, Any] = {"replicas": replicas, "selector": selector}
    status["lastScaleTime"] = (
        now if current.get("replicas") != replicas else current.get("lastScaleTime", now)
    )
    return status


@dataclass
class AdapterSync:
    """What the live adapters of a graph ask for (see `plan_adapter_sync`)."""

    replicas: dict[str, int] = field(default_factory=dict)
    """Service -> replica count the adapter owns (to build with)."""
    spec_patch: dict[str, dict[str, int]] = field(default_factory=dict)
    """`spec.services` merge patch writing those counts back into the DGD."""
    scaled: list[str] = field(default_factory=list)
    """One Scaled Event message per service in `spec_patch`."""
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Adapter name -> status to write on it."""


def plan_adapter_sync(
    dgd: DynamoGraphDeployment,
    *,
    uid: str,
    live: Mapping[ChildKey, Mapping[str, Any]],
    patched: Mapping[str, tuple[int, int]],
    written_statuses: Mapping[str, Mapping[str, Any]],
    now: str,
) -> AdapterSync:
    """Copy each adapter's `spec.replicas` into its service (the adapter owns the count).

    Only adapters owned by this incarnation (`uid`) count. `patched` holds the counts this
    incarnation already wrote into the DGD with the generation each write produced: the same
    count is not written twice while the watch still shows an older generation, but a DGD at
    that generation or later with another count was edited after us (a re-apply, a manual edit)
    and gets the adapter's count again, without waiting for an operator restart.
    `written_statuses` holds the adapter statuses already written.
    """
    generation = dgd.metadata.generation or 0
    name = dgd.metadata.name
    sync = AdapterSync()
    for svc, spec in sorted(dgd.spec.services.items()):
        if spec.scaling_adapter is None or not spec.scaling_adapter.enabled:
            continue
        adapter = live.get((GROUP_VERSION_V1BETA1, DGDSA_KIND, adapter_name(name, svc)))
        if adapter is None or not is_owned_by(adapter, uid):
            continue
        wanted = adapter_replicas(adapter)
        if wanted is None:
            continue
        current = spec.replicas if spec.replicas is not None else 1
        if wanted != current:
            sync.replicas[svc] = wanted
            ours = patched.get(svc)
            if ours is None or ours[0] != wanted or generation >= ours[1]:
                sync.spec_patch[svc] = {"replicas": wanted}
                sync.scaled.append(
                    f"service {svc} scaled from {current} to {wanted} replicas by {DGDSA_KIND}/{adapter_name(name, svc)}"
                )
        status = adapter_status(adapter, dgd_name=name, service=svc, replicas=wanted, now=now)
        written = written_statuses.get(adapter_name(name, svc)) or {}
        if status is not None and _counted(written) != _counted(status):
            sync.statuses[adapter_name(name, svc)] = status
    return sync


def _counted(status: Mapping[str, Any]) -> tuple[object, object]:
    """What an adapter status says, apart from when it was written."""
    return status.get("replicas"), status.get("selector")
