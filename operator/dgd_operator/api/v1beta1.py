"""DynamoGraphDeployment and its scaling adapter at `nvidia.com/v1beta1`, and DynamoWorkerMetadata.

v1beta1 is Dynamo's storage version since 1.4 and the hub of the conversion (`api.conversion`):
a graph is a list of `components`, each with a full Kubernetes `podTemplate` whose container
`main` receives the operator's defaults. Facts: `../shared/reference/dynamo-v1beta1.md` §2, §6.

The models are strict like the API server with strict field validation: a key the schema does not
know is an error naming its field path, and `replicas: "2"` is not an int. Kubernetes objects
embedded whole (the pod template, EnvVars, a ConfigMapKeySelector) are plain dicts in their own
camelCase shape (`K8sObject`); `EMBEDDED_FIELDS` names their Kubernetes definitions for the CRD
generator. Rules the CRD states in CEL are kept as data (`CEL_RULES`, keyed by model name, as
`crdgen` attaches them) and, where they need no old object, checked here as well.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from dgd_operator.api.constants import (
    DGD_KIND,
    DGDSA_KIND,
    DWM_KIND,
)
from dgd_operator.api.models import (
    TOPOLOGY_DOMAIN_PATTERN,
    K8sObject,
    ObjectMeta,
    Quantity,
    parse_quantity,
)

MAX_COMPONENTS: Final = 25
COMPONENT_NAME_PATTERN: Final = r"^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$"
RUNTIME_VERSION_PATTERN: Final = r"^(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})$"
DNS_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
LABEL_KEY_PATTERN: Final = (
    r"^(([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*/)?"
    r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$"
)
MAIN_CONTAINER: Final = "main"

ComponentType = Literal["frontend", "worker", "prefill", "decode", "planner", "epp"]
GmsMode = Literal["IntraPod", "InterPod"]

_LIST_MAP_BY_NAME: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name"],
}
_LIST_MAP_BY_TYPE: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}
_LIST_SET: dict[str, Any] = {"x-kubernetes-list-type": "set"}
_OPEN_OBJECT: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}

CORE = "io.k8s.api.core.v1."
# Fields holding Kubernetes objects: (model, wire name) -> (definition, list?), as `api.k8s`.
EMBEDDED_FIELDS: dict[tuple[str, str], tuple[str, bool]] = {
    ("GraphSpec", "env"): (CORE + "EnvVar", True),
    ("ComponentSpec", "podTemplate"): (CORE + "PodTemplateSpec", False),
    ("EppConfig", "configMapRef"): (CORE + "ConfigMapKeySelector", False),
    ("ExtraClientPod", "podTemplate"): (CORE + "PodTemplateSpec", False),
}


class StrictModel(BaseModel):
    """Base of the v1beta1 models: camelCase on the wire, unknown keys refused, no coercion."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=False,
        strict=True,
    )


# --- Spec: shared pieces -----------------------------------------------------------------------


class ProviderOverride(StrictModel):
    """A sparse fragment of the workload provider's own object, merged into what the operator renders."""

    api_version: str = Field(
        min_length=1,
        description="API version of the provider object the fragment belongs to; only `grove.io/v1alpha1` is accepted by admission. Immutable.",
    )
    target: str | None = Field(
        default=None,
        description="Which provider object the fragment patches (`PodCliqueSet`, `PodCliqueTemplateSpec` or `PodCliqueScalingGroupConfig`); filled in by the defaulting webhook when unambiguous. Immutable.",
    )
    value: dict[str, Any] = Field(
        json_schema_extra=_OPEN_OBJECT,
        description="The fragment itself; admission allows only the topology constraint paths.",
    )


class RestartStrategy(StrictModel):
    """How a requested restart walks through the components."""

    type: Literal["Sequential", "Parallel"] = Field(
        default="Sequential",
        description="`Sequential` restarts one component at a time (the default), `Parallel` all at once.",
    )
    order: list[str] = Field(
        default_factory=list,
        description="Component order for a sequential restart (default: names sorted); must list every component once. Not allowed with `Parallel`.",
    )


class Restart(StrictModel):
    """A restart request: set or change `id` after creation to restart the pods."""

    id: str = Field(
        min_length=1, description="Request identifier; every new value is a new restart."
    )
    strategy: RestartStrategy | None = Field(default=None, description="How the restart proceeds.")


class GraphTopologyConstraint(StrictModel):
    """Topology-aware placement of the whole graph (Grove)."""

    cluster_topology_name: str = Field(
        min_length=1,
        description="Name of the Grove ClusterTopology (and its binding) describing the cluster's levels. Immutable.",
    )
    pack_domain: str | None = Field(
        default=None,
        pattern=TOPOLOGY_DOMAIN_PATTERN,
        description="Topology level (lower-case DNS label, e.g. `zone`) to pack the graph into; components without their own constraint inherit it.",
    )


class KvTransferPolicy(StrictModel):
    """Topology-aware routing of KV-cache transfers between prefill and decode workers."""

    cluster_topology_name: str | None = Field(
        default=None,
        min_length=1,
        description="ClusterTopology whose levels label the pods; exclusive with `labelKey` (Grove only).",
    )
    label_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=317,
        pattern=LABEL_KEY_PATTERN,
        description="Node label key whose value names the transfer domain; exclusive with `clusterTopologyName`.",
    )
    domain: str = Field(
        pattern=TOPOLOGY_DOMAIN_PATTERN,
        description="Topology domain within which transfers should stay (lower-case DNS label).",
    )
    enforcement: Literal["required", "preferred"] = Field(
        default="required",
        description="`required` keeps transfers inside the domain; `preferred` weighs it with `preferredWeight`.",
    )
    preferred_weight: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Weight of staying in the domain, 0 to 1; required with and only allowed with `preferred`.",
    )

    @model_validator(mode="after")
    def _one_source_and_weight(self) -> KvTransferPolicy:
        if (self.label_key is None) == (self.cluster_topology_name is None):
            raise ValueError("exactly one of labelKey and clusterTopologyName must be set")
        if self.enforcement == "preferred" and self.preferred_weight is None:
            raise ValueError("preferredWeight is required when enforcement is preferred")
        if self.enforcement != "preferred" and self.preferred_weight is not None:
            raise ValueError("preferredWeight is only allowed when enforcement is preferred")
        return self


class GraphExperimental(StrictModel):
    """Graph-level preview features (outside the v1beta1 deprecation policy)."""

    kv_transfer_policy: KvTransferPolicy | None = Field(
        default=None, description="Topology-aware KV transfer routing. Immutable."
    )


# --- Spec: component ---------------------------------------------------------------------------


class RoleOverride(StrictModel):
    """Provider override for one role (leader or worker) of a multinode component."""

    provider_override: ProviderOverride | None = Field(
        default=None,
        description="Fragment merged into this role's PodClique template (`PodCliqueTemplateSpec`).",
    )


class Multinode(StrictModel):
    """Spreads each replica of a component over several pods (nodes)."""

    node_count: int = Field(
        default=2,
        ge=2,
        description="Pods per replica (leader plus workers), at least 2. GPUs per replica = nodeCount x GPUs per pod.",
    )
    leader: RoleOverride | None = Field(default=None, description="Settings of the leader pod.")
    worker: RoleOverride | None = Field(default=None, description="Settings of the worker pods.")


class ModelRef(StrictModel):
    """The model a component serves, for discovery."""

    name: str = Field(min_length=1, description="Model identifier, e.g. `Qwen/Qwen3-0.6B`.")
    revision: str | None = Field(default=None, description="Model revision.")


class ScalingAdapter(StrictModel):
    """Presence enables a DynamoGraphDeploymentScalingAdapter that owns the component's replicas."""


class EppConfig(StrictModel):
    """Configuration of the endpoint picker (EPP): exactly one of `configMapRef` or `config`."""

    config_map_ref: K8sObject | None = Field(
        default=None,
        description="Key of an existing ConfigMap holding the EndpointPickerConfig YAML.",
    )
    config: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra=_OPEN_OBJECT,
        description="An inline EndpointPickerConfig (plugins, scheduling profiles); the operator stores it in a ConfigMap.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> EppConfig:
        if (self.config_map_ref is None) == (self.config is None):
            raise ValueError("exactly one of configMapRef and config must be set")
        return self


class CompilationCache(StrictModel):
    """A PersistentVolumeClaim used as the backend's compilation cache."""

    pvc_name: str = Field(min_length=1, description="Name of the existing PVC to mount.")
    mount_path: str | None = Field(
        default=None,
        description="Mount path in `main`; empty means the backend's default (vLLM `/root/.cache/vllm`).",
    )


class ComponentTopologyConstraint(StrictModel):
    """Topology-aware placement of one component (Grove)."""

    pack_domain: str = Field(
        pattern=TOPOLOGY_DOMAIN_PATTERN,
        description="Topology level to pack the component's pods into; no wider than the graph's. Immutable.",
    )


class ExtraClientPod(StrictModel):
    """Reserved by Dynamo for inter-pod GPU memory service clients; always refused today."""

    name: str = Field(description="Name of the client pod.")
    pod_template: K8sObject | None = Field(default=None, description="The client pod's template.")


class GpuMemoryService(StrictModel):
    """GPU memory service: model weights held by a separate process the engine attaches to (DRA)."""

    mode: GmsMode = Field(
        default="IntraPod",
        description="`IntraPod` (a sidecar in the worker pod, the default) or `InterPod` (a weight-server pod per rank; Grove and vLLM only).",
    )
    device_class_name: str = Field(
        default="gpu.nvidia.com", description="DRA DeviceClass of the shared GPUs."
    )
    extra_client_containers: list[str] | None = Field(
        default=None,
        json_schema_extra=_LIST_SET,
        description="Other `podTemplate` containers that also attach to the GPU memory (IntraPod only).",
    )
    extra_client_pods: list[ExtraClientPod] | None = Field(
        default=None,
        max_length=0,
        json_schema_extra=_LIST_MAP_BY_NAME,
        description="Reserved; must be empty.",
    )

    @field_validator("extra_client_containers")
    @classmethod
    def _dns_labels(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            _check_dns_label(name)
        return value

    @model_validator(mode="after")
    def _mode_rules(self) -> GpuMemoryService:
        if self.extra_client_containers and self.mode != "IntraPod":
            raise ValueError("extraClientContainers is only allowed with mode IntraPod")
        return self


class Failover(StrictModel):
    """Hot standby engines that take over the GPU memory of a failed primary."""

    mode: GmsMode = Field(default="IntraPod", description="Must equal the GPU memory service mode.")
    num_shadows: int = Field(
        default=1, ge=1, le=1, description="Standby engines per primary (exactly 1 today)."
    )


class Grove(StrictModel):
    """Grove-specific shape of a component."""

    force_scaling_group: bool | None = Field(
        default=None,
        description="Render a single-node component as a PodCliqueScalingGroup (one single-pod clique per replica). Immutable.",
    )


class CheckpointIdentity(StrictModel):
    """Deprecated: what a checkpoint was taken of (use `checkpointRef`)."""

    model: str = Field(min_length=1, description="Model identifier.")
    backend_framework: Literal["vllm", "sglang", "trtllm"] = Field(description="Engine backend.")
    dynamo_version: str | None = Field(default=None, description="Dynamo version of the image.")
    tensor_parallel_size: int = Field(default=1, ge=1, description="Tensor parallel size.")
    pipeline_parallel_size: int = Field(default=1, ge=1, description="Pipeline parallel size.")
    dtype: str | None = Field(default=None, description="Model data type.")
    max_model_len: int | None = Field(default=None, ge=1, description="Maximum context length.")
    extra_parameters: dict[str, str] | None = Field(
        default=None, description="Other engine parameters that identify the checkpoint."
    )


class CheckpointJob(StrictModel):
    """How the checkpoint job runs."""

    gms_client_containers: list[str] | None = Field(
        default=None,
        json_schema_extra=_LIST_SET,
        description="Containers of the job that attach to the GPU memory service.",
    )
    pod_template: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra=_OPEN_OBJECT,
        description="Pod template of the checkpoint job (not schema-checked).",
    )

    @field_validator("gms_client_containers")
    @classmethod
    def _dns_labels(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            _check_dns_label(name)
        return value


class Checkpoint(StrictModel):
    """Start workers from a CRIU/CUDA checkpoint (DynamoCheckpoint) instead of loading the model."""

    enabled: bool = Field(description="Use checkpoint/restore for this component.")
    mode: Literal["Auto", "Manual"] | None = Field(
        default=None, description="Deprecated: `Auto` or `Manual` checkpoint creation."
    )
    startup_policy: Literal["Immediate", "WaitForCheckpoint"] = Field(
        default="Immediate",
        description="`Immediate` starts normally while no checkpoint is ready; `WaitForCheckpoint` keeps the component pending until it is.",
    )
    deletion_policy: Literal["Delete", "Retain"] = Field(
        default="Delete",
        description="Whether a checkpoint the graph created is deleted with it (`Delete`) or kept (`Retain`).",
    )
    checkpoint_ref: str | None = Field(
        default=None, description="Name of an existing DynamoCheckpoint to restore from."
    )
    identity: CheckpointIdentity | None = Field(
        default=None, description="Deprecated: identity of the checkpoint to find or create."
    )
    target_container_name: str = Field(
        default=MAIN_CONTAINER,
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL_PATTERN,
        description="Container that is checkpointed and restored (default `main`).",
    )
    job: CheckpointJob | None = Field(
        default=None, description="The checkpoint job; not allowed together with `checkpointRef`."
    )

    @model_validator(mode="after")
    def _job_or_ref(self) -> Checkpoint:
        if self.job is not None and self.checkpoint_ref:
            raise ValueError("job cannot be combined with a non-empty checkpointRef")
        return self


class ComponentExperimental(StrictModel):
    """Component preview features (outside the v1beta1 deprecation policy)."""

    gpu_memory_service: GpuMemoryService | None = Field(
        default=None, description="GPU memory service; presence enables it."
    )
    failover: Failover | None = Field(
        default=None,
        description="Standby engines; needs `gpuMemoryService` with the same mode.",
    )
    grove: Grove | None = Field(default=None, description="Grove-only settings.")
    checkpoint: Checkpoint | None = Field(default=None, description="Checkpoint/restore.")


class ComponentSpec(StrictModel):
    """One component of the graph (`spec.components[]`)."""

    provider_override: ProviderOverride | None = Field(
        default=None,
        description="Fragment merged into the component's Grove object (`PodCliqueTemplateSpec`, or `PodCliqueScalingGroupConfig` when it is a scaling group).",
    )
    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=COMPONENT_NAME_PATTERN,
        description="Stable name of the component (case kept in labels, lower-cased in child names); unique case-insensitively.",
    )
    type: ComponentType | None = Field(
        default=None,
        description="Role: `frontend`, `worker`, `prefill`, `decode`, `planner` or `epp`; unset means a plain container without role defaults.",
    )
    runtime_version_override: str | None = Field(
        default=None,
        pattern=RUNTIME_VERSION_PATTERN,
        description="Dynamo runtime version (`X.Y.Z`) inside the `main` image, when its tag is not a version. Does not change the image.",
    )
    global_dynamo_namespace: bool | None = Field(
        default=None,
        description="Put the component in the global Dynamo namespace `dynamo` instead of the graph's own.",
    )
    pod_template: K8sObject | None = Field(
        default=None,
        description="The pod (a Kubernetes PodTemplateSpec). Container `main` receives the operator's defaults (its `image` is required); other containers are sidecars.",
    )
    replicas: int | None = Field(
        default=None,
        ge=0,
        description="Desired pods (multinode: groups of nodeCount pods); defaulted to 1. Owned by the scaling adapter when `scalingAdapter` is set.",
    )
    min_available: int | None = Field(
        default=None,
        ge=1,
        description="Grove gang minimum of the component's PodClique or scaling group; at most `replicas` (unless 0). Immutable once set.",
    )
    multinode: Multinode | None = Field(
        default=None, description="Spread each replica over several pods; absent means single-node."
    )
    shared_memory_size: Quantity | None = Field(
        default=None,
        description="Size of the memory-backed `/dev/shm` (default `8Gi`); `0` removes the volume.",
    )
    model_ref: ModelRef | None = Field(default=None, description="Model served, for discovery.")
    scaling_adapter: ScalingAdapter | None = Field(
        default=None,
        description="`{}` creates a DynamoGraphDeploymentScalingAdapter `<dgd>-<lower(name)>` that owns `replicas`; omit to opt out.",
    )
    epp_config: EppConfig | None = Field(
        default=None, description="Endpoint picker configuration (`type: epp` only)."
    )
    frontend_sidecar: str | None = Field(
        default=None,
        description="Name of a `podTemplate` container that receives the frontend's defaults (conventionally `sidecar-frontend`).",
    )
    compilation_cache: CompilationCache | None = Field(
        default=None, description="PVC-backed compilation cache of the engine."
    )
    topology_constraint: ComponentTopologyConstraint | None = Field(
        default=None, description="Per-component topology constraint (Grove). Immutable."
    )
    experimental: ComponentExperimental | None = Field(
        default=None, description="Preview features of this component."
    )

    @field_validator("shared_memory_size")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        if value is not None:
            parse_quantity(value)
        return value

    @model_validator(mode="after")
    def _schema_rules(self) -> ComponentSpec:
        if self.epp_config is not None and self.type != "epp":
            raise ValueError("eppConfig is only allowed for components of type epp")
        if self.min_available is not None and self.replicas != 0:
            replicas = 1 if self.replicas is None else self.replicas
            if self.min_available > replicas:
                raise ValueError(f"minAvailable ({self.min_available}) must not exceed replicas")
        return self


class GraphSpec(StrictModel):
    """`spec` of a v1beta1 DynamoGraphDeployment."""

    provider_override: ProviderOverride | None = Field(
        default=None,
        description="Fragment merged into the generated Grove PodCliqueSet (`spec.template.topologyConstraint` only).",
    )
    annotations: dict[str, str] | None = Field(
        default=None,
        description="Annotations for every child object and pod (a component's `podTemplate` values win).",
    )
    labels: dict[str, str] | None = Field(
        default=None,
        description="Labels for every child object and pod (a component's `podTemplate` values win).",
    )
    priority_class_name: str | None = Field(
        default=None, description="PriorityClass of the Grove PodCliqueSet (Grove only)."
    )
    components: list[ComponentSpec] | None = Field(
        default=None,
        max_length=MAX_COMPONENTS,
        json_schema_extra=_LIST_MAP_BY_NAME,
        description="The graph: 1 to 25 components, names unique case-insensitively, at most one `epp`; the set of names is immutable.",
    )
    env: list[K8sObject] | None = Field(
        default=None,
        description="Env vars (Kubernetes EnvVar) put before every `main` container's own; a component's entry of the same name wins.",
    )
    backend_framework: Literal["sglang", "vllm", "trtllm"] | None = Field(
        default=None,
        description="`sglang`, `vllm` or `trtllm` (immutable); detected from the worker command when unset.",
    )
    restart: Restart | None = Field(
        default=None,
        description="Restart request; must be unset at create, set or change `id` later.",
    )
    topology_constraint: GraphTopologyConstraint | None = Field(
        default=None, description="Deployment-level topology constraint (Grove). Immutable."
    )
    experimental: GraphExperimental | None = Field(
        default=None, description="Graph-level preview features."
    )

    @model_validator(mode="after")
    def _component_rules(self) -> GraphSpec:
        seen: dict[str, str] = {}
        for component in self.components or []:
            key = component.name.lower()
            if key in seen:
                raise ValueError(
                    f"component names must be unique case-insensitively: {seen[key]!r} and {component.name!r}"
                )
            seen[key] = component.name
        if sum(1 for c in self.components or [] if c.type == "epp") > 1:
            raise ValueError("at most one component may have type epp")
        return self


# --- Status --------------------------------------------------------------------------------------


class Condition(StrictModel):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(description="Condition type, e.g. `Ready`.")
    status: Literal["True", "False", "Unknown"] = Field(description="`True`, `False` or `Unknown`.")
    observed_generation: int | None = Field(
        default=None, description="The `.metadata.generation` this condition describes."
    )
    last_transition_time: str | None = Field(
        default=None, description="When `status` last changed (RFC 3339)."
    )
    reason: str | None = Field(default=None, description="Machine-readable reason.")
    message: str | None = Field(default=None, description="Human-readable detail.")


class GroupStatus(StrictModel):
    """dgd extension: one multinode group and its whole-group restarts (Dynamo has no such field)."""

    index: int = Field(description="Group index (the replica it serves).")
    name: str | None = Field(default=None, description="Group name.")
    phase: str | None = Field(
        default=None, description="`Starting`, `Running`, `Restarting` or `Failed`."
    )
    restarts: int | None = Field(default=None, description="Whole-group restarts of this revision.")
    last_restart_reason: str | None = Field(default=None, description="Why it last restarted.")
    last_restart_time: str | None = Field(default=None, description="When it last restarted.")
    restart_times: list[str] | None = Field(
        default=None, description="Recent restarts counted against the restart budget."
    )
    message: str | None = Field(default=None, description="Why the group failed.")


class ComponentReplicaStatus(StrictModel):
    """Observed replicas of one component (`status.components[<name>]`)."""

    component_kind: Literal[
        "PodClique", "PodCliqueScalingGroup", "Deployment", "LeaderWorkerSet", "StatefulSet"
    ] = Field(
        description="Kind of the backing workload (dgd extension: `StatefulSet` for multinode "
        "groups, which dgd runs as leader and worker StatefulSets)."
    )
    component_names: list[str] | None = Field(
        default=None,
        description="Names of the backing workloads; old and new (sorted) during a managed rolling update.",
    )
    runtime_namespace: str | None = Field(
        default=None,
        description="Dynamo runtime namespace the component's pods use now (workers: suffixed with the worker hash).",
    )
    replicas: int = Field(ge=0, description="Total replicas.")
    updated_replicas: int = Field(ge=0, description="Replicas of the current revision.")
    ready_replicas: int | None = Field(default=None, description="Ready replicas, where reported.")
    available_replicas: int | None = Field(
        default=None, description="Available replicas, where reported."
    )
    scheduled_replicas: int | None = Field(
        default=None, description="Scheduled replicas (Grove); unset means not reported."
    )
    groups: list[GroupStatus] | None = Field(
        default=None, description="dgd extension: multinode groups, each restarted as a whole."
    )


class RestartStatus(StrictModel):
    """Progress of the last restart request."""

    observed_id: str | None = Field(
        default=None, alias="observedID", description="The `spec.restart.id` being handled."
    )
    phase: str | None = Field(
        default=None,
        description="`Pending`, `Restarting`, `Completed`, `Failed` or `Superseded`.",
    )
    in_progress: list[str] | None = Field(
        default=None, description="Components restarting right now."
    )


class CheckpointStatus(StrictModel):
    """Checkpoint of one component."""

    checkpoint_name: str | None = Field(default=None, description="DynamoCheckpoint name.")
    checkpoint_id: str | None = Field(
        default=None, alias="checkpointID", description="Identifier of the checkpoint."
    )
    identity_hash: str | None = Field(default=None, description="Deprecated identity hash.")
    ready: bool | None = Field(default=None, description="The checkpoint can be restored from.")


class RollingUpdateStatus(StrictModel):
    """Progress of a managed worker rolling update."""

    phase: Literal["Pending", "InProgress", "Completed", "Failed", ""] | None = Field(
        default=None, description="`Pending`, `InProgress`, `Completed` (or `Failed`)."
    )
    start_time: str | None = Field(default=None, description="When it started.")
    end_time: str | None = Field(default=None, description="When it completed.")
    updated_components: list[str] | None = Field(
        default=None, description="Worker components already on the new revision."
    )


class PlacementStatus(StrictModel):
    """How well the pods were placed against the topology constraints."""

    score: float | None = Field(default=None, ge=0, le=1, description="0 to 1, the worst unit.")
    state: Literal["Reported", "Partial", "Unsupported", "Unknown"] | None = Field(
        default=None, description="Whether a score could be computed."
    )


class GraphStatus(StrictModel):
    """`status` of a v1beta1 DynamoGraphDeployment."""

    observed_generation: int | None = Field(
        default=None, description="Generation of the last pass that finished without error."
    )
    state: Literal["initializing", "pending", "successful", "failed"] = Field(
        default="initializing",
        description="`initializing`, `pending`, `successful` (all children ready) or `failed`.",
    )
    conditions: list[Condition] | None = Field(
        default=None,
        json_schema_extra=_LIST_MAP_BY_TYPE,
        description="`Ready` (always) and `TopologyLevelsAvailable` (Grove topology).",
    )
    components: dict[str, ComponentReplicaStatus] | None = Field(
        default=None, description="Replicas per component name."
    )
    restart: RestartStatus | None = Field(default=None, description="Restart progress.")
    checkpoints: dict[str, CheckpointStatus] | None = Field(
        default=None, description="Checkpoint per component name."
    )
    rolling_update: RollingUpdateStatus | None = Field(
        default=None, description="Managed rolling update progress."
    )
    placement: PlacementStatus | None = Field(
        default=None, description="Placement quality (not written by Dynamo 1.5)."
    )


class DynamoGraphDeployment(StrictModel):
    """A DynamoGraphDeployment at `nvidia.com/v1beta1`."""

    api_version: Literal["nvidia.com/v1beta1"] = Field(
        default="nvidia.com/v1beta1", alias="apiVersion", description="`nvidia.com/v1beta1`."
    )
    kind: Literal["DynamoGraphDeployment"] = Field(default=DGD_KIND, description="The kind.")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: GraphSpec = Field(description="The graph of components and its settings.")
    status: GraphStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )


# --- Scaling adapter ----------------------------------------------------------------------------


class DgdRef(StrictModel):
    """The DGD component a scaling adapter drives."""

    name: str = Field(min_length=1, description="DGD name (same namespace).")
    component_name: str = Field(
        min_length=1, description="`spec.components[].name` in that DGD (case as written)."
    )


class ScalingAdapterSpec(StrictModel):
    """`spec` of a v1beta1 DynamoGraphDeploymentScalingAdapter."""

    replicas: int = Field(
        ge=0, description="Desired replicas of the component (written through `/scale`)."
    )
    dgd_ref: DgdRef = Field(description="The DGD component this adapter scales.")


class ScalingAdapterStatus(StrictModel):
    """`status` of a v1beta1 DynamoGraphDeploymentScalingAdapter."""

    replicas: int = Field(description="Replicas last propagated to the DGD.")
    selector: str | None = Field(
        default=None, description="Label selector of the component's pods (for the HPA)."
    )
    last_scale_time: str | None = Field(
        default=None, description="When the adapter last changed the DGD."
    )


class DynamoGraphDeploymentScalingAdapter(StrictModel):
    """A DynamoGraphDeploymentScalingAdapter at `nvidia.com/v1beta1`."""

    api_version: Literal["nvidia.com/v1beta1"] = Field(
        default="nvidia.com/v1beta1", alias="apiVersion", description="`nvidia.com/v1beta1`."
    )
    kind: Literal["DynamoGraphDeploymentScalingAdapter"] = Field(
        default=DGDSA_KIND, description="The kind."
    )
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: ScalingAdapterSpec = Field(description="Desired replicas and the component to drive.")
    status: ScalingAdapterStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )


# --- DynamoWorkerMetadata ---------------------------------------------------------------------


class WorkerMetadataSpec(StrictModel):
    """`spec` of a DynamoWorkerMetadata: the discovery data one runtime process publishes."""

    data: dict[str, Any] = Field(
        json_schema_extra=_OPEN_OBJECT,
        description="The runtime's discovery document (endpoints, model cards, event channels and sources); opaque to the operator.",
    )


class DynamoWorkerMetadata(StrictModel):
    """A DynamoWorkerMetadata (`nvidia.com/v1alpha1`), written by Dynamo runtime pods under Kubernetes discovery."""

    api_version: Literal["nvidia.com/v1alpha1"] = Field(
        default="nvidia.com/v1alpha1", alias="apiVersion", description="`nvidia.com/v1alpha1`."
    )
    kind: Literal["DynamoWorkerMetadata"] = Field(default=DWM_KIND, description="The kind.")
    metadata: ObjectMeta = Field(description="Standard object metadata; the name is the pod's.")
    spec: WorkerMetadataSpec = Field(description="The published discovery data.")


# --- CEL rules of the CRD (attached by the CRD generator) ---------------------------------------
# Keyed by model name (`x-kubernetes-validations` of that object) or `Model.wireName` (of one
# property). Rules using `oldSelf` are transition rules: only the API server can check them.

CEL_RULES: dict[str, list[dict[str, Any]]] = {
    "GraphSpec": [
        {
            "rule": "oldSelf.hasValue() || !has(self.restart)",
            "optionalOldSelf": True,
            "fieldPath": ".restart",
            "message": "spec.restart must be unset when the DynamoGraphDeployment is created",
        },
        {
            "rule": "!has(self.components) || self.components.filter(c, has(c.type) && c.type == 'epp').size() <= 1",
            "fieldPath": ".components",
            "message": "at most one component may have type epp",
        },
        {
            "rule": (
                "!has(self.components) || self.components.all(c1, !has(c1.name) || "
                "self.components.filter(c2, has(c2.name) && "
                "c2.name.lowerAscii() == c1.name.lowerAscii()).size() == 1)"
            ),
            "fieldPath": ".components",
            "message": "component names must be unique case-insensitively",
        },
    ],
    "ComponentSpec": [
        {
            "rule": "!has(self.eppConfig) || (has(self.type) && self.type == 'epp')",
            "message": "eppConfig is only allowed for components of type epp",
        },
        {
            "rule": (
                "!has(self.minAvailable) || (has(self.replicas) && self.replicas == 0) || "
                "self.minAvailable <= (has(self.replicas) ? self.replicas : 1)"
            ),
            "message": "minAvailable must not exceed replicas",
        },
        {
            "rule": (
                "!has(oldSelf.minAvailable) || "
                "(has(self.minAvailable) && self.minAvailable == oldSelf.minAvailable)"
            ),
            "message": "minAvailable is immutable once set",
        },
    ],
    "EppConfig": [
        {
            "rule": "has(self.configMapRef) != has(self.config)",
            "message": "exactly one of configMapRef and config must be set",
        }
    ],
    "KvTransferPolicy": [
        {
            "rule": (
                "(has(self.labelKey) && !has(self.clusterTopologyName)) || "
                "(!has(self.labelKey) && has(self.clusterTopologyName))"
            ),
            "message": "exactly one of labelKey and clusterTopologyName must be set",
        },
        {
            "rule": "!has(self.enforcement) || self.enforcement != 'preferred' || has(self.preferredWeight)",
            "message": "preferredWeight is required when enforcement is preferred",
        },
        {
            "rule": "!has(self.preferredWeight) || (has(self.enforcement) && self.enforcement == 'preferred')",
            "message": "preferredWeight is only allowed when enforcement is preferred",
        },
    ],
    # Attached to the labelKey property itself.
    "KvTransferPolicy.labelKey": [
        {
            "rule": "!self.contains('/') || self.split('/')[0].size() <= 253",
            "message": "the prefix of labelKey must be at most 253 characters",
        }
    ],
    "GpuMemoryService": [
        {
            "rule": "!has(self.extraClientContainers) || self.mode == 'IntraPod'",
            "message": "extraClientContainers is only allowed with mode IntraPod",
        },
        {
            "rule": "!has(self.extraClientPods) || self.mode == 'InterPod'",
            "message": "extraClientPods is only allowed with mode InterPod",
        },
        {
            "rule": "!has(self.extraClientPods) || size(self.extraClientPods) == 0",
            "message": "extraClientPods is reserved and must be empty",
        },
    ],
    "Checkpoint": [
        {
            "rule": "!has(self.job) || !has(self.checkpointRef) || size(self.checkpointRef) == 0",
            "message": "job cannot be combined with a non-empty checkpointRef",
        }
    ],
}


def _check_dns_label(name: str) -> None:
    if not 1 <= len(name) <= 63 or not re.match(DNS_LABEL_PATTERN, name):
        raise ValueError(f"{name!r} is not a DNS label (lower case, digits, '-', 1 to 63)")
