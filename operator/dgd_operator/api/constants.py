"""The one home of every API fact: group, versions, kinds, plurals, label and annotation keys,
states, condition reasons and Event reasons.

Controllers, builders, admission, the CLI and the dev tools import these names; nothing else in
the operator spells one of these strings. Dynamo's spelling is used wherever Dynamo has one
(`../shared/reference/dynamo-operator.md` §2.3, `dynamo-v1beta1.md`), so NVIDIA's images and
tools find what they look for.
"""

from __future__ import annotations

from typing import Final

# --- API group, versions, kinds, plurals -------------------------------------------------------
API_GROUP: Final = "nvidia.com"
API_VERSION: Final = "v1alpha1"
# `<group>/<version>`, spelled out so type checkers see the literal the models declare.
GROUP_VERSION: Final = "nvidia.com/v1alpha1"

# Dynamo >= 1.4 stores nvidia.com/v1beta1 (the hub); v1alpha1 is served, deprecated (a spoke).
API_VERSION_V1BETA1: Final = "v1beta1"
GROUP_VERSION_V1BETA1: Final = f"{API_GROUP}/{API_VERSION_V1BETA1}"

DGD_KIND: Final = "DynamoGraphDeployment"
DGD_PLURAL: Final = "dynamographdeployments"
DGD_SINGULAR: Final = "dynamographdeployment"
DGD_SHORT_NAME: Final = "dgd"

DGDSA_KIND: Final = "DynamoGraphDeploymentScalingAdapter"
DGDSA_PLURAL: Final = "dynamographdeploymentscalingadapters"
DGDSA_SINGULAR: Final = "dynamographdeploymentscalingadapter"
DGDSA_SHORT_NAME: Final = "dgdsa"

# --- Component types (`spec.services.<name>.componentType`) ----------------------------------
COMPONENT_FRONTEND: Final = "frontend"
COMPONENT_WORKER: Final = "worker"
COMPONENT_PREFILL: Final = "prefill"
COMPONENT_DECODE: Final = "decode"
COMPONENT_PLANNER: Final = "planner"
COMPONENT_EPP: Final = "epp"
COMPONENT_TYPES: Final = (
    COMPONENT_FRONTEND,
    COMPONENT_WORKER,
    COMPONENT_PREFILL,
    COMPONENT_DECODE,
    COMPONENT_PLANNER,
    COMPONENT_EPP,
)
# The component types that run an engine (the others never get a backend launch).
WORKER_COMPONENT_TYPES: Final = frozenset({COMPONENT_WORKER, COMPONENT_PREFILL, COMPONENT_DECODE})

# DynamoWorkerMetadata: written by Dynamo's runtime pods (Kubernetes discovery), v1alpha1 only.
DWM_KIND: Final = "DynamoWorkerMetadata"
DWM_PLURAL: Final = "dynamoworkermetadatas"
DWM_SINGULAR: Final = "dynamoworkermetadata"
DWM_SHORT_NAME: Final = "dwm"
DWM_VERSION: Final = "v1alpha1"

# --- Labels ------------------------------------------------------------------------------------
# Every child carries the graph label (Dynamo's) and managed-by (ours); the operator finds its
# children by them.
LABEL_GRAPH: Final = "nvidia.com/dynamo-graph-deployment-name"
LABEL_COMPONENT: Final = "nvidia.com/dynamo-component"
LABEL_DYNAMO_NAMESPACE: Final = "nvidia.com/dynamo-namespace"
LABEL_COMPONENT_TYPE: Final = "nvidia.com/dynamo-component-type"
LABEL_SUB_COMPONENT_TYPE: Final = "nvidia.com/dynamo-sub-component-type"
LABEL_SELECTOR: Final = "nvidia.com/selector"
LABEL_METRICS_ENABLED: Final = "nvidia.com/metrics-enabled"
LABEL_DISCOVERY_BACKEND: Final = "nvidia.com/dynamo-discovery-backend"
LABEL_DISCOVERY_ENABLED: Final = "nvidia.com/dynamo-discovery-enabled"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_APP_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_APP_NAME: Final = "app.kubernetes.io/name"
MANAGED_BY: Final = "dgd-operator"
# Multinode group pods and StatefulSets: role leader/worker and the group index. Group
# membership is read from these labels, never parsed back from object names.
LABEL_ROLE: Final = "role"
LABEL_GROUP_INDEX: Final = "instance-id"
ROLE_LEADER: Final = "leader"
ROLE_WORKER: Final = "worker"

# --- Annotations -------------------------------------------------------------------------------
ANNOTATION_ENABLE_METRICS: Final = "nvidia.com/enable-metrics"
ANNOTATION_DISCOVERY_BACKEND: Final = "nvidia.com/dynamo-discovery-backend"
ANNOTATION_KUBE_DISCOVERY_MODE: Final = "nvidia.com/dynamo-kube-discovery-mode"
ANNOTATION_ORIGIN_VERSION: Final = "nvidia.com/dynamo-operator-origin-version"
ANNOTATION_VLLM_EXECUTOR: Final = "nvidia.com/vllm-distributed-executor-backend"
# What the defaulting webhook stamps as the origin version: the Dynamo release whose API and
# defaults we implement (>= 1.0.0, so new vLLM multinode TP/PP graphs launch with `mp`).
DYNAMO_COMPATIBLE_VERSION: Final = "1.5.0"
ANNOTATION_DISABLE_PULL_SECRET_DISCOVERY: Final = "nvidia.com/disable-image-pull-secret-discovery"
ANNOTATION_DEPLOYMENT_STRATEGY: Final = "nvidia.com/deployment-strategy"
ANNOTATION_MAX_SURGE: Final = "nvidia.com/deployment-rolling-update-max-surge"
ANNOTATION_MAX_UNAVAILABLE: Final = "nvidia.com/deployment-rolling-update-max-unavailable"
ANNOTATION_RESTART_AT: Final = "nvidia.com/restartAt"
ANNOTATION_LAST_APPLIED_HASH: Final = "nvidia.com/last-applied-hash"
# Conversion bookkeeping (Dynamo's keys and payloads): what the other API version cannot hold.
# On a v1beta1 object the spec key holds a sparse v1alpha1 spec, on a v1alpha1 view a sparse
# v1beta1 spec; the `nvidia.com/dgd-` prefix is reserved for them.
ANNOTATION_DGD_SPEC: Final = "nvidia.com/dgd-spec"
ANNOTATION_DGD_STATUS: Final = "nvidia.com/dgd-status"
ANNOTATION_DCD_SPEC: Final = "nvidia.com/dcd-spec"
ANNOTATION_DCD_STATUS: Final = "nvidia.com/dcd-status"
CONVERSION_PAYLOAD_VERSION: Final = 1
ANNOTATION_WORKLOAD_PROVIDER: Final = "nvidia.com/workload-provider"
ANNOTATION_ENABLE_GROVE: Final = "nvidia.com/enable-grove"
# Validated by Dynamo's webhook (enum / positive watts) although dgd does not act on them.
ANNOTATION_GROVE_UPDATE_STRATEGY: Final = "nvidia.com/grove-update-strategy"
ANNOTATION_GPU_POWER_LIMIT: Final = "dynamo.nvidia.com/gpu-power-limit"

# DGD metadata annotations copied into every service's annotations (service value wins).
INHERITED_DGD_ANNOTATIONS: Final = (
    ANNOTATION_ENABLE_METRICS,
    ANNOTATION_DISCOVERY_BACKEND,
    ANNOTATION_KUBE_DISCOVERY_MODE,
    ANNOTATION_ORIGIN_VERSION,
    ANNOTATION_VLLM_EXECUTOR,
)

# kopf's bookkeeping goes under our own prefix (nothing is stored there today, see handlers).
KOPF_PREFIX: Final = "dgd.nvidia.com"
KOPF_FINALIZER: Final = "dgd.nvidia.com/finalizer"

# --- Resources ---------------------------------------------------------------------------------
GPU_RESOURCE: Final = "nvidia.com/gpu"

# --- DGD `status.state` values -----------------------------------------------------------------
STATE_PENDING: Final = "pending"
STATE_SUCCESSFUL: Final = "successful"
STATE_FAILED: Final = "failed"

# --- `Ready` condition reasons (Dynamo's strings, plus ours where Dynamo has none) --------------
REASON_ALL_READY: Final = "all_resources_are_ready"
REASON_NOT_READY: Final = "some_resources_are_not_ready"
REASON_INVALID_SPEC: Final = "invalid_spec"
REASON_RECONCILE_FAILED: Final = "failed_to_reconcile_the_resources"
# Ours: a multinode group spent its restart budget.
REASON_GROUP_FAILED: Final = "GroupRestartBudgetExhausted"

# --- Event reasons (stable, CamelCase as Kubernetes convention) -------------------------------
EVENT_CREATED: Final = "Created"
EVENT_UPDATED: Final = "Updated"
EVENT_DELETED: Final = "Deleted"
EVENT_SCALED: Final = "Scaled"
EVENT_RESTART_STARTED: Final = "RestartStarted"
EVENT_RESTART_COMPLETED: Final = "RestartCompleted"
EVENT_INVALID_SPEC: Final = "InvalidSpec"
EVENT_APPLY_FAILED: Final = "ApplyFailed"
EVENT_ADAPTER_CREATED: Final = "AdapterCreated"
EVENT_ADAPTER_DELETED: Final = "AdapterDeleted"
EVENT_RECONCILE_FAILED: Final = "ReconcileFailed"
EVENT_GROUP_RESTART: Final = "GroupRestart"
EVENT_GROUP_FAILED: Final = "GroupRestartBudgetExhausted"

# --- `status.restart.phase` values -------------------------------------------------------------
RESTART_RESTARTING: Final = "Restarting"
RESTART_COMPLETED: Final = "Completed"

# --- Gateway API Inference Extension, model Services, Istio (issue 14) --------------------------
# Worker-class pods carry the component class when their graph has an endpoint picker (EPP);
# with the Dynamo namespace it is the InferencePool's selector (dynamo-v1beta1.md §8.2).
LABEL_COMPONENT_CLASS: Final = "nvidia.com/dynamo-component-class"
COMPONENT_CLASS_WORKER: Final = "worker"
# `modelRef`: pods carry the hash of the model name as a label (names such as `Qwen/Qwen3-0.6B`
# are not label values) and the name itself as an annotation; the model's headless Service
# selects the hash.
LABEL_BASE_MODEL_HASH: Final = "nvidia.com/dynamo-base-model-hash"
ANNOTATION_BASE_MODEL: Final = "nvidia.com/dynamo-base-model"
ANNOTATION_ISTIO_INJECT: Final = "sidecar.istio.io/inject"

INFERENCE_POOL_GROUP: Final = "inference.networking.k8s.io"
INFERENCE_POOL_VERSION: Final = "v1"
INFERENCE_POOL_GROUP_VERSION: Final = f"{INFERENCE_POOL_GROUP}/{INFERENCE_POOL_VERSION}"
INFERENCE_POOL_KIND: Final = "InferencePool"
INFERENCE_POOL_PLURAL: Final = "inferencepools"
# The document the EPP reads from its config file (the x-k8s.io config API of the extension).
EPP_CONFIG_API_VERSION: Final = "inference.networking.x-k8s.io/v1alpha1"
EPP_CONFIG_KIND: Final = "EndpointPickerConfig"

ISTIO_NETWORKING_GROUP_VERSION: Final = "networking.istio.io/v1beta1"
VIRTUAL_SERVICE_KIND: Final = "VirtualService"
DESTINATION_RULE_KIND: Final = "DestinationRule"

# --- Gang scheduling: Kubernetes' own PodGroup API (scheduling.k8s.io, KEP-4671) --------------
# Beta in Kubernetes 1.37, served only when kube-apiserver runs with the GenericWorkload feature
# gate and `--runtime-config=scheduling.k8s.io/v1beta1=true`; detected through discovery, never
# assumed. Only versions whose PodGroup shape our builder writes are listed, best first.
SCHEDULING_API_GROUP: Final = "scheduling.k8s.io"
POD_GROUP_KIND: Final = "PodGroup"
POD_GROUP_PLURAL: Final = "podgroups"
POD_GROUP_VERSIONS: Final = ("v1beta1",)
# The PodGroupProtection admission plugin adds this finalizer to every PodGroup; the
# kube-controller-manager's podgroup-protection-controller removes it once no pod uses the group.
POD_GROUP_FINALIZER: Final = "scheduling.k8s.io/podgroup-protection"
# PodGroup status condition written by kube-scheduler (True once the gang was placed whole).
POD_GROUP_CONDITION_SCHEDULED: Final = "PodGroupInitiallyScheduled"
# DGD status condition saying whether multinode groups are placed all-or-nothing (PodGroups).
CONDITION_GANG_PLACEMENT: Final = "GangPlacement"
REASON_GANG_PLACEMENT_ACTIVE: Final = "PodGroupsCreated"
REASON_GANG_UNAVAILABLE: Final = "GangSchedulingUnavailable"
REASON_GANG_OTHER_SCHEDULER: Final = "PlacedByOtherScheduler"
# Scheduler queues a DGD asks for (metadata annotations, as Dynamo) and what pods get for them.
ANNOTATION_KAI_QUEUE: Final = "nvidia.com/kai-scheduler-queue"
ANNOTATION_VOLCANO_QUEUE: Final = "nvidia.com/volcano-queue"
KAI_SCHEDULER: Final = "kai-scheduler"
LABEL_KAI_QUEUE: Final = "kai.scheduler/queue"
VOLCANO_SCHEDULER: Final = "volcano"
ANNOTATION_VOLCANO_QUEUE_NAME: Final = "scheduling.volcano.sh/queue-name"
DEFAULT_SCHEDULER: Final = "default-scheduler"

# --- Topology packing and Ready reasons that say why (placement, issues 13/14) -----------------
# Node label key of each topology domain name a `packDomain` may use, unless the operator
# setting `DGD_TOPOLOGY_DOMAIN_KEYS` says otherwise: Grove's ClusterTopology domains with the
# well-known keys of its default topology, plus `nvlink` for the multi-node NVLink domain that
# NVIDIA's GPU feature discovery labels (`nvidia.com/gpu.clique`).
DEFAULT_TOPOLOGY_DOMAIN_KEYS: Final = {
    "region": "topology.kubernetes.io/region",
    "zone": "topology.kubernetes.io/zone",
    "datacenter": "topology.kubernetes.io/datacenter",
    "block": "topology.kubernetes.io/block",
    "rack": "topology.kubernetes.io/rack",
    "host": "kubernetes.io/hostname",
    "numa": "topology.kubernetes.io/numa",
    "nvlink": "nvidia.com/gpu.clique",
}
# Dynamo's topology condition and its reasons (dynamo-v1beta1.md §2.5).
CONDITION_TOPOLOGY_LEVELS: Final = "TopologyLevelsAvailable"
REASON_TOPOLOGY_AVAILABLE: Final = "AllTopologyLevelsAvailable"
REASON_TOPOLOGY_UNAVAILABLE: Final = "TopologyLevelsUnavailable"
REASON_TOPOLOGY_NOT_FOUND: Final = "TopologyDefinitionNotFound"
REASON_TOPOLOGY_PENDING: Final = "TopologyConditionPending"
# Dynamo's not-ready classes of the `Ready` condition (Grove pathway reasons, used for all).
REASON_INSUFFICIENT_CAPACITY: Final = "insufficient_capacity"
REASON_UPDATING: Final = "updating"
REASON_PODS_NOT_READY: Final = "pods_not_ready"
REASON_MIXED_NOT_READY: Final = "mixed_not_ready_reasons"
# --- Managed worker rollouts (dynamo-v1beta1.md §9) --------------------------------------------
# Each generation of the single-node worker components of a graph (worker/prefill/decode) is a
# set of Deployments `<dgd>-<lower(svc)>-<hash>` labelled with the generation's worker hash; its
# pods run in the runtime namespace `<base>-<hash>` (`DYN_NAMESPACE_WORKER_SUFFIX`), so frontends
# (which discover by `DYN_NAMESPACE_PREFIX`) never pair workers of different generations.
LABEL_WORKER_HASH: Final = "nvidia.com/dynamo-worker-hash"
ENV_WORKER_SUFFIX: Final = "DYN_NAMESPACE_WORKER_SUFFIX"
ROLLING_PENDING: Final = "Pending"
ROLLING_IN_PROGRESS: Final = "InProgress"
ROLLING_COMPLETED: Final = "Completed"
REASON_ROLLING_UPDATE: Final = "rolling_update_in_progress"
EVENT_ROLLING_UPDATE_STARTED: Final = "RollingUpdateStarted"
EVENT_ROLLING_UPDATE_COMPLETED: Final = "RollingUpdateCompleted"
RESTART_SUPERSEDED: Final = "Superseded"
EVENT_RESTART_SUPERSEDED: Final = "RestartSuperseded"
# DGD status condition saying whether the graph's endpoint picker got its InferencePool.
CONDITION_INFERENCE_POOL: Final = "InferencePoolReady"
REASON_INFERENCE_POOL_CREATED: Final = "InferencePoolCreated"
REASON_INFERENCE_POOL_API_MISSING: Final = "InferencePoolAPIUnavailable"
DESTINATION_RULE_PLURAL: Final = "destinationrules"
VIRTUAL_SERVICE_PLURAL: Final = "virtualservices"
