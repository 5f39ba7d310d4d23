"""DynamoGraphDeploymentScalingAdapter (DGDSA) objects and their status (pure, Dynamo §4.8).

A service with `scalingAdapter.enabled` gets a DGDSA `<dgd>-<lower(service)>`. The adapter owns
the service's replica count: HPA, KEDA, the planner or `kubectl scale dgdsa/...` change
`spec.replicas` through the scale subresource, and the operator copies it into the DGD. The
adapter is therefore created once (initialised with the service's replicas) and never
re-applied, so the operator never fights an autoscaler over `spec.replicas`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dgd_operator.reconcile.constants import (
    LABEL_COMPONENT,
    LABEL_DGD_NAME,
    LABEL_MANAGED_BY,
    MANAGED_BY,
)

DGDSA_API_VERSION = "nvidia.com/v1alpha1"
DGDSA_KIND = "DynamoGraphDeploymentScalingAdapter"
DGD_KIND = "DynamoGraphDeployment"


def adapter_name(dgd_name: str, service: str) -> str:
    """`<dgd>-<lower(service)>`, Dynamo's adapter name."""
    return f"{dgd_name}-{service.lower()}"


def adapter_selector(dgd_name: str, service: str) -> str:
    """The pod label selector reported in the adapter's status (for HPA)."""
    return f"{LABEL_COMPONENT}={service},{LABEL_DGD_NAME}={dgd_name}"


def build_adapter(
    *, dgd_name: str, namespace: str, dgd_uid: str | None, service: str, replicas: int
) -> dict[str, Any]:
    """The DGDSA for `service`, owned by the DGD, initialised with `replicas`."""
    metadata: dict[str, Any] = {
        "name": adapter_name(dgd_name, service),
        "namespace": namespace,
        "labels": {
            LABEL_DGD_NAME: dgd_name,
            LABEL_COMPONENT: service,
            LABEL_MANAGED_BY: MANAGED_BY,
        },
    }
    if dgd_uid:
        metadata["ownerReferences"] = [
            {
                "apiVersion": DGDSA_API_VERSION,
                "kind": DGD_KIND,
                "name": dgd_name,
                "uid": dgd_uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "apiVersion": DGDSA_API_VERSION,
        "kind": DGDSA_KIND,
        "metadata": metadata,
        "spec": {"replicas": replicas, "dgdRef": {"name": dgd_name, "serviceName": service}},
    }


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
    status["lastScaleTime"] = now if current.get("replicas") != replicas else current.get("lastScaleTime", now)
    return status
