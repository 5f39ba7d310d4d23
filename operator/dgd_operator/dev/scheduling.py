"""Client-side helpers for gang scheduling on a live cluster (tests and `dgd dev`).

The operator decides whether to create PodGroups from API discovery only; the pure decision is
:func:`dgd_operator.builders.gang.find_pod_group_api`. This module fetches the discovery documents
it needs and reads back what kube-scheduler wrote on a PodGroup.
"""

from __future__ import annotations

from dgd_operator.api.constants import (
    POD_GROUP_CONDITION_SCHEDULED,
    POD_GROUP_VERSIONS,
    SCHEDULING_API_GROUP,
)
from dgd_operator.builders.gang import PodGroupApi, find_pod_group_api
from dgd_operator.dev.rest import ApiError, JsonDict, KubeRest


def discover_pod_group_api(rest: KubeRest) -> PodGroupApi | None:
    """The PodGroup API the cluster serves (by legacy per-version discovery), or None.

    Only the versions our builder can write are asked for; a 404 means "not served" (old
    Kubernetes, or the GenericWorkload gate / ``scheduling.k8s.io/v1beta1`` runtime-config off).
    """
    documents: list[JsonDict] = []
    for version in POD_GROUP_VERSIONS:
        try:
            documents.append(rest.get(f"/apis/{SCHEDULING_API_GROUP}/{version}"))
        except ApiError as exc:
            if exc.status != 404:
                raise
    return find_pod_group_api(documents)


def pod_group_scheduled_condition(pod_group: JsonDict) -> JsonDict | None:
    """The scheduler's ``PodGroupInitiallyScheduled`` condition of a PodGroup, if written yet."""
    for condition in (pod_group.get("status") or {}).get("conditions") or []:
        if condition.get("type") == POD_GROUP_CONDITION_SCHEDULED:
            return dict(condition)
    return None
