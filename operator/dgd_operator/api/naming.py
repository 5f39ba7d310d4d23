"""Every name the operator gives a child object, its length limits, and group membership.

Names are derived exactly as Dynamo derives them (`../shared/reference/dynamo-operator.md`
§2.2) where Dynamo has a name; the multinode group names are ours. Nothing else in the
operator formats a child name, and nothing parses one back: group membership is read from
the `role` and `instance-id` labels every group object carries (`group_membership`).
The rules that turn the length limits into admission errors live in `api.validation.rules`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from dgd_operator.api import constants

GLOBAL_DYNAMO_NAMESPACE: Final = "dynamo"
DISCOVERY_SUFFIX: Final = "k8s-service-discovery"
NODES_SUFFIX: Final = "nodes"
LEADER_SUFFIX: Final = "ldr"
WORKER_SUFFIX: Final = "wkr"
LAUNCH_SCRIPTS_SUFFIX: Final = "wait-leader-script"
"""Dynamo's name for the per-DGD ConfigMap with the wait-for-leader script (we ship more in it)."""

# Shared per-namespace ServiceAccounts of the planner and EPP components (Dynamo's names).
PLANNER_SERVICE_ACCOUNT: Final = "planner-serviceaccount"
EPP_SERVICE_ACCOUNT: Final = "epp-serviceaccount"

MAX_LABEL_VALUE: Final = 63
"""Kubernetes limit for a label value, and for a DNS-1123/1035 label (a Service name)."""
MAX_STATEFULSET_NAME: Final = 52
"""A StatefulSet's pods carry `controller-revision-hash: <sts>-<hash>`, a label value (<= 63);
the hash takes up to 10 characters plus the dash, so StatefulSet names must stay <= 52."""

GroupRole = Literal["leader", "worker"]
"""The two roles in a multinode group (the value of the `role` label)."""


# --- per service ---------------------------------------------------------------------------


def component_name(dgd_name: str, service: str) -> str:
    """`<dgd>-<lower(service)>`: the Deployment, `nvidia.com/selector` value and DGDSA name."""
    return f"{dgd_name}-{service.lower()}"


def adapter_name(dgd_name: str, service: str) -> str:
    """The DynamoGraphDeploymentScalingAdapter of a service: the component name."""
    return component_name(dgd_name, service)


def service_object_name(dgd_name: str, service: str) -> str:
    """Name of the component's Kubernetes Service (and Ingress): the component name, "." -> "-"."""
    return component_name(dgd_name, service).replace(".", "-")


def dynamo_namespace(k8s_namespace: str, dgd_name: str, *, global_namespace: bool = False) -> str:
    """The Dynamo runtime namespace: `<k8s ns>-<dgd with "." -> "-">`, or `dynamo` when global."""
    if global_namespace:
        return GLOBAL_DYNAMO_NAMESPACE
    return f"{k8s_namespace}-{dgd_name.replace('.', '-')}"


# --- multinode groups ----------------------------------------------------------------------


def nodes_service_name(dgd_name: str, service: str) -> str:
    """Headless Service `<dgd>-<svc>-nodes` governing a multinode service's StatefulSets."""
    return f"{component_name(dgd_name, service)}-{NODES_SUFFIX}"


def leader_statefulset_name(dgd_name: str, service: str, group: int) -> str:
    """Leader StatefulSet `<dgd>-<svc>-<group>-ldr` of one group (1 replica)."""
    return f"{component_name(dgd_name, service)}-{group}-{LEADER_SUFFIX}"


def worker_statefulset_name(dgd_name: str, service: str, group: int) -> str:
    """Worker StatefulSet `<dgd>-<svc>-<group>-wkr` of one group (N-1 replicas, ordinals from 1)."""
    return f"{component_name(dgd_name, service)}-{group}-{WORKER_SUFFIX}"


def group_statefulset_name(dgd_name: str, service: str, group: int, role: GroupRole) -> str:
    """The leader or worker StatefulSet of one group."""
    if role == constants.ROLE_LEADER:
        return leader_statefulset_name(dgd_name, service, group)
    return worker_statefulset_name(dgd_name, service, group)


def leader_address(dgd_name: str, service: str, group: int) -> str:
    """Stable DNS name of a group's leader pod (the value of `DGD_LEADER_ADDRESS`)."""
    leader = leader_statefulset_name(dgd_name, service, group)
    return f"{leader}-0.{nodes_service_name(dgd_name, service)}"


def worker_address(dgd_name: str, service: str, group: int, rank: int) -> str:
    """Stable DNS name of worker `rank` (1..N-1) of a group."""
    worker = worker_statefulset_name(dgd_name, service, group)
    return f"{worker}-{rank}.{nodes_service_name(dgd_name, service)}"


@dataclass(frozen=True)
class GroupMembership:
    """Where a multinode StatefulSet or pod belongs, read from its labels."""

    service: str
    group: int
    role: GroupRole


def group_membership(labels: Mapping[str, str] | None) -> GroupMembership | None:
    """The group a multinode object belongs to, from its labels; None for anything else.

    Reads `nvidia.com/dynamo-component` (the service key), `instance-id` (the group index)
    and `role`; names are never parsed back.
    """
    if not labels:
        return None
    service = labels.get(constants.LABEL_COMPONENT)
    index = labels.get(constants.LABEL_GROUP_INDEX)
    role = labels.get(constants.LABEL_ROLE)
    if not service or index is None or not index.isdigit():
        return None
    if role == constants.ROLE_LEADER:
        return GroupMembership(service, int(index), "leader")
    if role == constants.ROLE_WORKER:
        return GroupMembership(service, int(index), "worker")
    return None


def group_labels(group: int, role: GroupRole) -> dict[str, str]:
    """The labels that make an object a member of a group (read back by `group_membership`)."""
    return {constants.LABEL_ROLE: role, constants.LABEL_GROUP_INDEX: str(group)}


# --- per graph -----------------------------------------------------------------------------


def discovery_service_account_name(dgd_name: str) -> str:
    """`<dgd>-k8s-service-discovery`: the pods' ServiceAccount under Kubernetes discovery."""
    return f"{dgd_name}-{DISCOVERY_SUFFIX}"


def discovery_role_name(dgd_name: str) -> str:
    """`<dgd>-k8s-service-discovery-role`."""
    return f"{discovery_service_account_name(dgd_name)}-role"


def discovery_role_binding_name(dgd_name: str) -> str:
    """`<dgd>-k8s-service-discovery-binding`."""
    return f"{discovery_service_account_name(dgd_name)}-binding"


def launch_scripts_configmap_name(dgd_name: str) -> str:
    """`<dgd>-wait-leader-script`: the per-DGD ConfigMap with the multinode launch helpers."""
    return f"{dgd_name}-{LAUNCH_SCRIPTS_SUFFIX}"


# --- length limits -------------------------------------------------------------------------


def longest_group_statefulset_name(dgd_name: str, service: str, replicas: int) -> str:
    """The longest StatefulSet name a multinode service gets: the last group's leader."""
    return leader_statefulset_name(dgd_name, service, max(replicas - 1, 0))


# --- endpoint picker and model Services (dynamo-v1beta1.md §8.2, dynamo-operator.md §2.5) -------

EPP_CONFIG_SUFFIX: Final = "epp-config"
INFERENCE_POOL_SUFFIX: Final = "pool"
MODEL_SERVICE_PREFIX: Final = "dynamo-model"


def epp_config_map_name(dgd_name: str) -> str:
    """`<dgd>-epp-config`: the ConfigMap rendered from an inline `eppConfig.config`."""
    return f"{dgd_name}-{EPP_CONFIG_SUFFIX}"


def inference_pool_name(dgd_name: str) -> str:
    """`<dgd>-pool`: the graph's InferencePool (also the EPP's `--pool-name`)."""
    return f"{dgd_name}-{INFERENCE_POOL_SUFFIX}"


def model_hash(model: str) -> str:
    """First 8 hex digits of sha256(model name): a label value for any model name."""
    return hashlib.sha256(model.encode()).hexdigest()[:8]


def model_service_name(model: str) -> str:
    """`dynamo-model-<hash>`: the headless Service of a base model (one per namespace)."""
    return f"{MODEL_SERVICE_PREFIX}-{model_hash(model)}"
