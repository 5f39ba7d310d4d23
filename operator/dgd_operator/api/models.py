"""DynamoGraphDeployment (nvidia.com/v1alpha1) and DynamoGraphDeploymentScalingAdapter models.

Field for field as NVIDIA Dynamo's Go operator defines them (late v1alpha1 era). Python
attributes are snake_case; the wire names (aliases) are the camelCase JSON names of the CRD.
Kubernetes core types that the DGD embeds (EnvVar, Probe, PodSpec, Container, ResourceClaim)
are kept as plain dicts in Kubernetes' own camelCase shape: builders pass them through and the
CRD generator types them with the real Kubernetes schemas.

Validation here covers what the CRD schema checks (types, enums, minimums, quantities); the
rules of Dynamo's admission webhook live in `dgd_operator.api.validation`. Models are strict
like the API server: `replicas: "2"` is an error, not an int.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from dgd_operator.api.constants import DGD_KIND, DGDSA_KIND, GROUP_VERSION

MAX_SERVICES = 25
MAX_PVCS = 100
DEFAULT_SHARED_MEMORY = "8Gi"
FRONTEND_SIDECAR_CONTAINER = "sidecar-frontend"

BackendFramework = Literal["sglang", "vllm", "trtllm"]
BACKEND_FRAMEWORKS: tuple[str, ...] = ("sglang", "vllm", "trtllm")
# Kubernetes core objects embedded verbatim (camelCase keys, as in the Kubernetes API).
K8sObject = dict[str, Any]

# The Kubernetes resource.Quantity grammar (the pattern Kubernetes' own CRD generator emits).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)
_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
TOPOLOGY_DOMAIN_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"


def parse_quantity(value: str) -> Decimal:
    """Parse a Kubernetes quantity (`500m`, `40Gi`, `1e3`) into a Decimal, or raise ValueError."""
    text = value.strip()
    if text != value or not _QUANTITY_RE.match(text):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (examples: 4, 500m, 40Gi, 1.5T)")
    number = text.rstrip("KMGTPEinumk")
    suffix = text[len(number) :]
    try:
        if suffix in _BINARY_SUFFIXES:
            return Decimal(number) * _BINARY_SUFFIXES[suffix]
        if suffix in _DECIMAL_SUFFIXES:
            return Decimal(number) * _DECIMAL_SUFFIXES[suffix]
        # Exponent form such as 1e3 (rstrip left the digits after `e` in place).
        return Decimal(text)
    except (InvalidOperation, KeyError) as exc:  # pragma: no cover - the regex rules these out
        raise ValueError(f"{value!r} is not a Kubernetes quantity") from exc


def _check_quantity(value: str | None) -> str | None:
    if value is not None:
        parse_quantity(value)
    return value


def _number_to_str(value: object) -> object:
    """Quantities may be written as YAML numbers (`size: 10`); Kubernetes accepts both."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(value)
    return value


# A resource.Quantity field: int or string on the wire, kept as a string.
QUANTITY_JSON_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "pattern": QUANTITY_PATTERN,
    "x-kubernetes-int-or-string": True,
}
Quantity = Annotated[
    str, BeforeValidator(_number_to_str), WithJsonSchema(QUANTITY_JSON_SCHEMA, mode="validation")
]
# Dynamo types cpu/memory/gpu as plain strings; the CRD still checks the quantity grammar.
_QUANTITY_STRING: JsonDict = {"pattern": QUANTITY_PATTERN}


class ApiModel(BaseModel):
    """Base for every API model: camelCase on the wire, snake_case in Python.

    Unknown fields are ignored, as the API server prunes them; `dgd validate` reports them
    separately as warnings. Strict like the API server: no string-to-int coercion.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        validate_default=False,
        strict=True,
    )


class ResourceItem(ApiModel):
    """Requests or limits of a service's main container, in Dynamo's compact form."""

    cpu: str | None = Field(
        default=None,
        json_schema_extra=_QUANTITY_STRING,
        description='CPU quantity as a string, e.g. `"4"` or `"500m"`.',
    )
    memory: str | None = Field(
        default=None,
        json_schema_extra=_QUANTITY_STRING,
        description='Memory quantity as a string, e.g. `"40Gi"`.',
    )
    gpu: str | None = Field(
        default=None,
        json_schema_extra=_QUANTITY_STRING,
        description=(
            'Number of GPUs per pod as a string (a whole number, e.g. `"1"`); maps to '
            "`nvidia.com/gpu` unless `gpuType` is set."
        ),
    )
    gpu_type: str | None = Field(
        default=None,
        description="Extended resource name used for `gpu` instead of `nvidia.com/gpu`, e.g. `gpu.intel.com/xe`.",
    )
    custom: dict[str, str] = Field(
        default_factory=dict,
        description='Other resources copied verbatim by name, e.g. `rdma/ib: "8"` or `ephemeral-storage: 50Gi`.',
    )

    @field_validator("cpu", "memory", "gpu")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        return _check_quantity(value)

    @field_validator("gpu")
    @classmethod
    def _whole_gpus(cls, value: str | None) -> str | None:
        if value is not None:
            amount = parse_quantity(value)
            if amount != amount.to_integral_value() or amount < 0:
                raise ValueError(f"GPUs must be a whole number, got {value!r}")
        return value

    @field_validator("custom")
    @classmethod
    def _custom_quantities(cls, value: dict[str, str]) -> dict[str, str]:
        for name, amount in value.items():
            try:
                parse_quantity(amount)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return value


class Resources(ApiModel):
    """Resources of a service's main container."""

    requests: ResourceItem | None = Field(
        default=None, description="Resource requests of the main container."
    )
    limits: ResourceItem | None = Field(
        default=None,
        description="Resource limits of the main container. GPUs usually go here (Kubernetes copies them to requests).",
    )
    claims: list[K8sObject] = Field(
        default_factory=list,
        description="Dynamic resource claims (corev1 ResourceClaim `{name, request}`) appended to the container's `resources.claims`; the pod-level claim goes in `extraPodSpec.resourceClaims`.",
    )


class Multinode(ApiModel):
    """Spreads one engine instance over several pods (nodes)."""

    node_count: int = Field(
        default=2,
        ge=2,
        description="Pods per engine instance (leader plus workers), at least 2. Total GPUs per instance = nodeCount x GPUs per pod.",
    )


class VolumeMount(ApiModel):
    """Mounts a PersistentVolumeClaim into the main container."""

    name: str = Field(
        description="Name of the PVC to mount (also the volume name); usually declared in `spec.pvcs`."
    )
    mount_point: str | None = Field(
        default=None,
        description="Path in the container. Required unless `useAsCompilationCache` is true.",
    )
    use_as_compilation_cache: bool = Field(
        default=False,
        description="Use this volume as the backend's compilation cache (vLLM default mount `/root/.cache/vllm`).",
    )


class SharedMemory(ApiModel):
    """The `/dev/shm` memory-backed volume of the pod."""

    disabled: bool | None = Field(
        default=None, description="Do not mount `/dev/shm`; `size` must then be unset."
    )
    size: Quantity | None = Field(
        default=None, description="Size limit of the `/dev/shm` emptyDir (default `8Gi`)."
    )

    @field_validator("size")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        return _check_quantity(value)


class ExtraPodMetadata(ApiModel):
    """Extra labels and annotations for the pod template."""

    annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations added to the pod template."
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels added to the pod template (the operator's selector labels cannot be overridden).",
    )


class ExtraPodSpec(ApiModel):
    """A Kubernetes PodSpec merged over the operator's defaults, plus the main container.

    Every PodSpec field is accepted (kept in `model_extra`, camelCase as in Kubernetes).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        validate_default=False,
        strict=True,
    )

    main_container: K8sObject | None = Field(
        default=None,
        description=(
            "A Kubernetes Container merged over the operator's default `main` container "
            "(`image`, `command`, `args`, `env`, `volumeMounts`, `startupProbe`, ...); "
            "`name` may be omitted."
        ),
    )

    def pod_spec(self) -> K8sObject:
        """Return the PodSpec fields (everything except `mainContainer`) as a plain dict."""
        return dict(self.model_extra or {})


class IngressTLS(ApiModel):
    """TLS settings of a frontend Ingress."""

    secret_name: str | None = Field(
        default=None, description="Secret holding the TLS certificate and key."
    )


class IngressSpec(ApiModel):
    """Ingress (or Istio VirtualService) for a frontend service."""

    enabled: bool = Field(default=False, description="Create an Ingress for this frontend.")
    host: str | None = Field(
        default=None,
        description="Host name part (`<hostPrefix><host>.<hostSuffix>`); required when enabled.",
    )
    use_virtual_service: bool = Field(
        default=False, description="Create an Istio VirtualService instead of an Ingress."
    )
    virtual_service_gateway: str | None = Field(
        default=None, description="Istio gateway of the VirtualService."
    )
    host_prefix: str | None = Field(default=None, description="Prefix prepended to the host.")
    host_suffix: str | None = Field(
        default=None, description="Domain suffix appended to the host (default `local`)."
    )
    annotations: dict[str, str] = Field(default_factory=dict, description="Ingress annotations.")
    labels: dict[str, str] = Field(default_factory=dict, description="Ingress labels.")
    tls: IngressTLS | None = Field(default=None, description="TLS settings.")
    ingress_controller_class_name: str | None = Field(
        default=None, description="IngressClass name."
    )


class ScalingAdapter(ApiModel):
    """Opt-in DynamoGraphDeploymentScalingAdapter for this service (HPA/KEDA/planner target)."""

    enabled: bool = Field(
        default=False,
        description="Create a DGDSA `<dgd>-<lower(service)>` that owns this service's replicas through its `/scale` subresource.",
    )


class ModelRef(ApiModel):
    """The model a service serves, for discovery."""

    name: str = Field(description="Model identifier, e.g. `Qwen/Qwen3-0.6B`.")
    revision: str | None = Field(default=None, description="Model revision.")


class FrontendSidecar(ApiModel):
    """A frontend container injected beside the worker (Gateway API Inference Extension)."""

    image: str = Field(description="Image of the `sidecar-frontend` container.")
    args: list[str] = Field(default_factory=list, description="Arguments of the sidecar.")
    env_from_secret: str | None = Field(
        default=None, description="Secret whose keys become env vars of the sidecar."
    )
    envs: list[K8sObject] = Field(
        default_factory=list, description="Env vars (corev1 EnvVar) of the sidecar."
    )


class ServiceTopologyConstraint(ApiModel):
    """Topology-aware placement of one service."""

    pack_domain: str = Field(
        pattern=TOPOLOGY_DOMAIN_PATTERN,
        description="Topology domain to pack the service's pods into (lower-case DNS label, e.g. `rack`); no wider than the graph's.",
    )


class SpecTopologyConstraint(ApiModel):
    """Topology-aware placement of the whole graph."""

    topology_profile: str = Field(min_length=1, description="Name of the cluster topology profile.")
    pack_domain: str | None = Field(
        default=None,
        pattern=TOPOLOGY_DOMAIN_PATTERN,
        description="Topology domain to pack the graph into (lower-case DNS label, e.g. `zone`).",
    )


class PVC(ApiModel):
    """A PersistentVolumeClaim declared by the graph, referenced by `volumeMounts[].name`."""

    create: bool | None = Field(
        default=None,
        description="Create the PVC (owned by the DGD; needs size, storageClass, volumeAccessMode); otherwise it must already exist.",
    )
    name: str = Field(description="PVC name.")
    storage_class: str | None = Field(default=None, description="StorageClass of a created PVC.")
    size: Quantity | None = Field(
        default=None, description="Requested storage of a created PVC, e.g. `100Gi`."
    )
    volume_access_mode: str | None = Field(
        default=None, description="Access mode of a created PVC, e.g. `ReadWriteMany`."
    )

    @field_validator("size")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        return _check_quantity(value)


class RestartStrategy(ApiModel):
    """How a requested restart proceeds through the services."""

    type: Literal["Sequential", "Parallel"] = Field(
        default="Sequential",
        description="`Sequential` (one service at a time, the default) or `Parallel` (all at once).",
    )
    order: list[str] = Field(
        default_factory=list,
        max_length=MAX_SERVICES,
        description="Service order for `Sequential` (default: alphabetical); when given it must list every service exactly once. Not allowed with `Parallel`.",
    )


class Restart(ApiModel):
    """A restart request; change `id` to restart again. Must be unset when the DGD is created."""

    id: str = Field(
        min_length=1,
        description="Restart request identifier; any new value triggers a rolling restart of the pods.",
    )
    strategy: RestartStrategy | None = Field(default=None, description="Restart strategy.")


class ServiceSpec(ApiModel):
    """One service (component) of the graph: `spec.services.<name>`."""

    component_type: str | None = Field(
        default=None,
        description="Role: `frontend`, `worker`, `prefill`, `decode`, `planner` or `epp`; anything else is a plain container.",
    )
    sub_component_type: str | None = Field(
        default=None,
        description="Sub-role, usually `prefill` or `decode`; becomes label `nvidia.com/dynamo-sub-component-type`.",
    )
    replicas: int | None = Field(
        default=None,
        ge=0,
        description="Replicas (for multinode services: number of groups of nodeCount pods). Default 1.",
    )
    multinode: Multinode | None = Field(
        default=None,
        description="Spread each replica over several pods (leader plus workers); absent means single-node.",
    )
    resources: Resources | None = Field(
        default=None, description="Resources of the main container."
    )
    envs: list[K8sObject] = Field(
        default_factory=list,
        description="Env vars (corev1 EnvVar) of the main container; win over the graph's `envs` on name clash.",
    )
    env_from_secret: str | None = Field(
        default=None, description="Secret added as `envFrom` of the main container."
    )
    volume_mounts: list[VolumeMount] = Field(
        default_factory=list, description="PVCs to mount into the main container."
    )
    shared_memory: SharedMemory | None = Field(
        default=None, description="`/dev/shm` settings (default: mounted, 8Gi)."
    )
    extra_pod_spec: ExtraPodSpec | None = Field(
        default=None,
        description="Escape hatch: a PodSpec, plus `mainContainer`, merged over the operator's defaults.",
    )
    extra_pod_metadata: ExtraPodMetadata | None = Field(
        default=None, description="Extra pod labels and annotations."
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations on this service's objects and pods (win over the graph's).",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels on this service's objects and pods (win over the graph's).",
    )
    liveness_probe: K8sObject | None = Field(
        default=None,
        description="Liveness probe (corev1 Probe); replaces the default entirely.",
    )
    readiness_probe: K8sObject | None = Field(
        default=None,
        description="Readiness probe (corev1 Probe); replaces the default entirely.",
    )
    dynamo_namespace: str | None = Field(
        default=None,
        description="Deprecated and ignored: the Dynamo namespace is computed from the DGD.",
    )
    global_dynamo_namespace: bool = Field(
        default=False, description="Put the component in the global Dynamo namespace `dynamo`."
    )
    service_name: str | None = Field(
        default=None, description="Set by the operator (the service key); leave unset."
    )
    ingress: IngressSpec | None = Field(default=None, description="Ingress for a frontend.")
    scaling_adapter: ScalingAdapter | None = Field(
        default=None, description="Opt-in DynamoGraphDeploymentScalingAdapter."
    )
    autoscaling: K8sObject | None = Field(
        default=None,
        description="Deprecated and ignored; use `scalingAdapter` with an HPA or KEDA instead.",
    )
    model_ref: ModelRef | None = Field(default=None, description="Model served, for discovery.")
    epp_config: K8sObject | None = Field(
        default=None,
        description="Endpoint picker config `{configMapRef | config}` (componentType `epp` only).",
    )
    frontend_sidecar: FrontendSidecar | None = Field(
        default=None, description="Frontend sidecar container (`sidecar-frontend`)."
    )
    checkpoint: K8sObject | None = Field(
        default=None, description="CRIU checkpoint/restore settings (accepted, not acted on)."
    )
    topology_constraint: ServiceTopologyConstraint | None = Field(
        default=None, description="Per-service topology constraint (immutable)."
    )
    gpu_memory_service: K8sObject | None = Field(
        default=None, description="GPU memory service sidecar (accepted, not acted on)."
    )
    failover: K8sObject | None = Field(
        default=None, description="Active/standby engines (accepted, not acted on)."
    )
    runtime_version_override: str | None = Field(
        default=None,
        description="Dynamo runtime version to assume when the image tag is not a version (accepted, not acted on).",
    )

    @property
    def is_multinode(self) -> bool:
        """True when each replica spans several pods."""
        return self.multinode is not None and self.multinode.node_count > 1

    @property
    def node_count(self) -> int:
        """Pods per replica (1 for single-node services)."""
        return self.multinode.node_count if self.multinode is not None else 1


class DynamoGraphDeploymentSpec(ApiModel):
    """`spec` of a DynamoGraphDeployment."""

    services: dict[str, ServiceSpec] = Field(
        default_factory=dict,
        max_length=MAX_SERVICES,
        description="The graph: service name (any case, e.g. `Frontend`, `VllmDecodeWorker`) to service spec. 1 to 25 services; the set of names is immutable.",
    )
    envs: list[K8sObject] = Field(
        default_factory=list,
        description="Env vars (corev1 EnvVar) for every service; a service's own `envs` win.",
    )
    backend_framework: BackendFramework | None = Field(
        default=None,
        description="`sglang`, `vllm` or `trtllm` (immutable); detected from the worker commands when unset.",
    )
    pvcs: list[PVC] = Field(
        default_factory=list,
        max_length=MAX_PVCS,
        description="PVCs declared by the graph (at most 100), mounted with `volumeMounts`.",
    )
    restart: Restart | None = Field(
        default=None,
        description="Rolling restart request; must be unset at create, set or change `id` later.",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations for every child object and pod (service values win).",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels for every child object and pod (service values win).",
    )
    topology_constraint: SpecTopologyConstraint | None = Field(
        default=None, description="Topology constraint for the graph (immutable)."
    )
    priority_class_name: str | None = Field(
        default=None, description="PriorityClass of the graph's pods."
    )
    provider_override: K8sObject | None = Field(
        default=None, description="Orchestrator-specific overrides (accepted, not acted on)."
    )
    experimental: K8sObject | None = Field(
        default=None,
        description="Experimental settings such as `kvTransferPolicy` (accepted, not acted on).",
    )


class Condition(ApiModel):
    """A standard Kubernetes condition."""

    type: str = Field(description="Condition type, e.g. `Ready`.")
    status: Literal["True", "False", "Unknown"] = Field(description="`True`, `False` or `Unknown`.")
    reason: str | None = Field(default=None, description="Machine-readable reason (CamelCase).")
    message: str | None = Field(default=None, description="Human-readable detail.")
    last_transition_time: str | None = Field(
        default=None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, description="The `.metadata.generation` this condition describes."
    )


class GroupStatus(ApiModel):
    """One multinode group (leader + worker StatefulSets) and its whole-group restarts."""

    index: int = Field(description="Group index (the replica it serves).")
    name: str | None = Field(default=None, description="Group name `<dgd>-<service>-<index>`.")
    phase: str | None = Field(
        default=None, description="`Starting`, `Running`, `Restarting` or `Failed`."
    )
    restarts: int = Field(default=0, description="Whole-group restarts of this revision.")
    last_restart_reason: str | None = Field(
        default=None, description="Why the group was last restarted."
    )
    last_restart_time: str | None = Field(
        default=None, description="When the group was last restarted."
    )
    restart_times: list[str] = Field(
        default_factory=list,
        description="Recent restarts counted against the restart budget.",
    )
    message: str | None = Field(default=None, description="Why the group failed.")


class ServiceReplicaStatus(ApiModel):
    """Observed replicas of one service."""

    component_kind: str | None = Field(
        default=None, description="Kind of the workload: `Deployment` or `StatefulSet`."
    )
    component_name: str | None = Field(
        default=None, description="Deprecated: first of componentNames."
    )
    component_names: list[str] = Field(
        default_factory=list, description="Names of the workload objects."
    )
    runtime_namespace: str | None = Field(
        default=None,
        description="Dynamo runtime namespace the service's pods use (what the planner reads).",
    )
    replicas: int | None = Field(default=None, description="Total pods.")
    updated_replicas: int | None = Field(default=None, description="Pods of the current revision.")
    ready_replicas: int | None = Field(default=None, description="Ready pods.")
    available_replicas: int | None = Field(default=None, description="Available pods.")
    scheduled_replicas: int | None = Field(
        default=None,
        description="Pods bound to a node (multinode: groups with every pod bound); unset: not reported.",
    )
    groups: list[GroupStatus] = Field(
        default_factory=list, description="Multinode groups, each restarted as a whole."
    )


class RestartStatus(ApiModel):
    """Progress of the last restart request."""

    observed_id: str | None = Field(
        default=None, alias="observedID", description="The `spec.restart.id` being handled."
    )
    phase: str | None = Field(
        default=None,
        description="`Pending`, `Restarting`, `Completed`, `Failed` or `Superseded`.",
    )
    in_progress: list[str] = Field(
        default_factory=list, description="Services restarting right now."
    )


class RollingUpdateStatus(ApiModel):
    """Progress of a managed rolling update."""

    phase: str | None = Field(
        default=None, description="`Pending`, `InProgress`, `Completed` or `Failed`."
    )
    start_time: str | None = Field(default=None, description="When the update started.")
    end_time: str | None = Field(default=None, description="When the update ended.")
    updated_services: list[str] = Field(
        default_factory=list, description="Services already updated."
    )


class DynamoGraphDeploymentStatus(ApiModel):
    """`status` of a DynamoGraphDeployment."""

    state: Literal["initializing", "pending", "successful", "failed"] | None = Field(
        default=None,
        description="`initializing`, `pending`, `successful` or `failed`.",
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="`Ready` (True when every service is ready)."
    )
    observed_generation: int | None = Field(
        default=None, description="Generation of the last reconcile that finished without error."
    )
    services: dict[str, ServiceReplicaStatus] = Field(
        default_factory=dict, description="Replicas per service."
    )
    restart: RestartStatus | None = Field(default=None, description="Restart progress.")
    rolling_update: RollingUpdateStatus | None = Field(
        default=None, description="Rolling update progress."
    )


class ObjectMeta(ApiModel):
    """The parts of Kubernetes ObjectMeta the operator reads."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", strict=True
    )

    name: str = Field(description="Object name.")
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class DynamoGraphDeployment(ApiModel):
    """A DynamoGraphDeployment object (apiVersion nvidia.com/v1alpha1)."""

    api_version: Literal["nvidia.com/v1alpha1"] = Field(default=GROUP_VERSION, alias="apiVersion")
    kind: Literal["DynamoGraphDeployment"] = DGD_KIND
    metadata: ObjectMeta
    spec: DynamoGraphDeploymentSpec = Field(description="The graph of services and their settings.")
    status: DynamoGraphDeploymentStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )


class DgdRef(ApiModel):
    """Which DGD service a scaling adapter drives."""

    name: str = Field(min_length=1, description="DGD name (same namespace).")
    service_name: str | None = Field(
        default=None, description="Service key in the DGD (case as written in the DGD)."
    )


class ScalingAdapterSpec(ApiModel):
    """`spec` of a DynamoGraphDeploymentScalingAdapter."""

    replicas: int = Field(ge=0, description="Desired replicas of the referenced service.")
    dgd_ref: DgdRef = Field(description="The DGD service this adapter scales.")


class ScalingAdapterStatus(ApiModel):
    """`status` of a DynamoGraphDeploymentScalingAdapter."""

    replicas: int | None = Field(default=None, description="Replicas last written to the DGD.")
    selector: str | None = Field(
        default=None, description="Label selector of the service's pods (for HPA)."
    )
    last_scale_time: str | None = Field(
        default=None, description="When the adapter last changed the DGD's replicas."
    )


class DynamoGraphDeploymentScalingAdapter(ApiModel):
    """A DynamoGraphDeploymentScalingAdapter object."""

    api_version: Literal["nvidia.com/v1alpha1"] = Field(default=GROUP_VERSION, alias="apiVersion")
    kind: Literal["DynamoGraphDeploymentScalingAdapter"] = DGDSA_KIND
    metadata: ObjectMeta
    spec: ScalingAdapterSpec = Field(description="Desired replicas and the DGD service to drive.")
    status: ScalingAdapterStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )
