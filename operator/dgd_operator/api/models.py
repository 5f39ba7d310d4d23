"""DynamoGraphDeployment (nvidia.com/v1alpha1) and DynamoGraphDeploymentScalingAdapter models.

Field for field as NVIDIA Dynamo's Go operator defines them (late v1alpha1 era). Python
attributes are snake_case; the wire names (aliases) are the camelCase JSON names of the CRD.
Kubernetes core types that the DGD embeds (EnvVar, Probe, PodSpec, Container, ResourceClaim)
are kept as plain dicts in Kubernetes' own camelCase shape: builders pass them through and the
CRD generator types them with the real Kubernetes schemas.

Validation here covers what the CRD schema and Dynamo's admission webhook check at create
time; update-only rules live with the webhook/reconcile code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

API_GROUP = "nvidia.com"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
DGD_KIND = "DynamoGraphDeployment"
DGDSA_KIND = "DynamoGraphDeploymentScalingAdapter"

MAX_SERVICES = 25
MAX_PVCS = 100
DEFAULT_SHARED_MEMORY = "8Gi"

BackendFramework = Literal["sglang", "vllm", "trtllm"]
# Kubernetes core objects embedded verbatim (camelCase keys, as in the Kubernetes API).
K8sObject = dict[str, Any]


class ApiModel(BaseModel):
    """Base for every API model: camelCase on the wire, snake_case in Python.

    Unknown fields are ignored, as the API server prunes them; `dgd validate` reports them
    separately as warnings.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        validate_default=False,
    )


class ResourceItem(ApiModel):
    """Requests or limits of a service's main container, in Dynamo's compact form."""

    cpu: str | None = Field(default=None, description="CPU quantity, e.g. `4` or `500m`.")
    memory: str | None = Field(default=None, description="Memory quantity, e.g. `40Gi`.")
    gpu: str | None = Field(
        default=None,
        description="Number of GPUs per pod; maps to `nvidia.com/gpu` unless `gpuType` is set.",
    )
    gpu_type: str | None = Field(
        default=None,
        description="Extended resource name used for `gpu` instead of `nvidia.com/gpu`, e.g. `gpu.intel.com/xe`.",
    )
    custom: dict[str, str] = Field(
        default_factory=dict,
        description="Other resources copied verbatim by name, e.g. `rdma/ib: \"8\"` or `ephemeral-storage: 50Gi`.",
    )


class Resources(ApiModel):
    """Resources of a service's main container."""

    requests: ResourceItem | None = Field(default=None, description="Resource requests.")
    limits: ResourceItem | None = Field(default=None, description="Resource limits.")
    claims: list[K8sObject] = Field(
        default_factory=list,
        description="Dynamic resource claims (corev1 ResourceClaim) appended to the container's `resources.claims`.",
    )


class Multinode(ApiModel):
    """Spreads one engine instance over several pods (nodes)."""

    node_count: int = Field(
        default=2,
        ge=2,
        description="Pods per engine instance (leader plus workers). Total GPUs per instance = nodeCount x GPUs per pod.",
    )


class VolumeMount(ApiModel):
    """Mounts a PersistentVolumeClaim into the main container."""

    name: str = Field(description="Name of the PVC to mount (also the volume name).")
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

    disabled: bool | None = Field(default=None, description="Do not mount `/dev/shm`.")
    size: str | None = Field(default=None, description="Size of `/dev/shm` (default `8Gi`).")


class ExtraPodMetadata(ApiModel):
    """Extra labels and annotations for the pod template."""

    annotations: dict[str, str] = Field(default_factory=dict, description="Pod annotations.")
    labels: dict[str, str] = Field(default_factory=dict, description="Pod labels.")


class ExtraPodSpec(ApiModel):
    """A Kubernetes PodSpec merged over the operator's defaults, plus the main container.

    Every PodSpec field is accepted (kept in `model_extra`, camelCase as in Kubernetes).
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", validate_default=False
    )

    main_container: K8sObject | None = Field(
        default=None,
        description="A Kubernetes Container merged over the operator's default `main` container (override semantics).",
    )

    def pod_spec(self) -> K8sObject:
        """Return the PodSpec fields (everything except `mainContainer`) as a plain dict."""
        return dict(self.model_extra or {})


class IngressTLS(ApiModel):
    """TLS settings of a frontend Ingress."""

    secret_name: str | None = Field(default=None, description="Secret holding the TLS certificate.")


class IngressSpec(ApiModel):
    """Ingress (or Istio VirtualService) for a frontend service."""

    enabled: bool = Field(default=False, description="Create an Ingress for this frontend.")
    host: str | None = Field(default=None, description="Host name part; required when enabled.")
    use_virtual_service: bool = Field(default=False, description="Create an Istio VirtualService instead of an Ingress.")
    virtual_service_gateway: str | None = Field(default=None, description="Istio gateway of the VirtualService.")
    host_prefix: str | None = Field(default=None, description="Prefix prepended to the host.")
    host_suffix: str | None = Field(default=None, description="Domain suffix appended to the host (default `local`).")
    annotations: dict[str, str] = Field(default_factory=dict, description="Ingress annotations.")
    labels: dict[str, str] = Field(default_factory=dict, description="Ingress labels.")
    tls: IngressTLS | None = Field(default=None, description="TLS settings.")
    ingress_controller_class_name: str | None = Field(default=None, description="IngressClass name.")


class ScalingAdapter(ApiModel):
    """Opt-in DynamoGraphDeploymentScalingAdapter for this service (HPA/KEDA/planner target)."""

    enabled: bool = Field(default=False, description="Create a DGDSA `<dgd>-<service>` that owns this service's replicas.")


class ModelRef(ApiModel):
    """The model a service serves, for discovery."""

    name: str = Field(description="Model identifier, e.g. `Qwen/Qwen3-0.6B`.")
    revision: str | None = Field(default=None, description="Model revision.")


class FrontendSidecar(ApiModel):
    """A frontend container injected beside the worker (Gateway API Inference Extension)."""

    image: str = Field(description="Image of the `sidecar-frontend` container.")
    args: list[str] = Field(default_factory=list, description="Arguments of the sidecar.")
    env_from_secret: str | None = Field(default=None, description="Secret whose keys become env vars.")
    envs: list[K8sObject] = Field(default_factory=list, description="Env vars of the sidecar.")


class ServiceTopologyConstraint(ApiModel):
    """Topology-aware placement of one service."""

    pack_domain: str = Field(description="Topology domain to pack the service's pods into.")


class SpecTopologyConstraint(ApiModel):
    """Topology-aware placement of the whole graph."""

    topology_profile: str = Field(min_length=1, description="Name of the cluster topology profile.")
    pack_domain: str | None = Field(default=None, description="Topology domain to pack the graph into.")


class PVC(ApiModel):
    """A PersistentVolumeClaim declared by the graph, referenced by `volumeMounts[].name`."""

    create: bool | None = Field(default=None, description="Create the PVC (owned by the DGD); otherwise it must exist.")
    name: str = Field(description="PVC name.")
    storage_class: str | None = Field(default=None, description="StorageClass of a created PVC.")
    size: str | None = Field(default=None, description="Requested storage of a created PVC.")
    volume_access_mode: str | None = Field(default=None, description="Access mode of a created PVC, e.g. `ReadWriteMany`.")


class RestartStrategy(ApiModel):
    """How a requested restart proceeds through the services."""

    type: Literal["Sequential", "Parallel"] = Field(default="Sequential", description="`Sequential` (one service at a time) or `Parallel`.")
    order: list[str] = Field(default_factory=list, description="Service order for `Sequential` (default: alphabetical); must list every service.")


class Restart(ApiModel):
    """A restart request; change `id` to restart again. Must be unset when the DGD is created."""

    id: str = Field(min_length=1, description="Restart request identifier; any new value triggers a restart.")
    strategy: RestartStrategy | None = Field(default=None, description="Restart strategy.")


class ServiceSpec(ApiModel):
    """One service (component) of the graph: `spec.services.<name>`."""

    component_type: str | None = Field(
        default=None,
        description="Role: `frontend`, `worker`, `prefill`, `decode`, `planner` or `epp`; anything else is a plain container.",
    )
    sub_component_type: str | None = Field(default=None, description="Sub-role label, usually `prefill` or `decode`.")
    replicas: int | None = Field(default=None, ge=0, description="Replicas (for multinode: number of groups). Default 1.")
    multinode: Multinode | None = Field(default=None, description="Spread each replica over several pods.")
    resources: Resources | None = Field(default=None, description="Resources of the main container.")
    envs: list[K8sObject] = Field(default_factory=list, description="Env vars (corev1 EnvVar); win over the graph's `envs`.")
    env_from_secret: str | None = Field(default=None, description="Secret added as `envFrom` of the main container.")
    volume_mounts: list[VolumeMount] = Field(default_factory=list, description="PVCs to mount.")
    shared_memory: SharedMemory | None = Field(default=None, description="`/dev/shm` settings (default 8Gi).")
    extra_pod_spec: ExtraPodSpec | None = Field(default=None, description="PodSpec and main container merged over the defaults.")
    extra_pod_metadata: ExtraPodMetadata | None = Field(default=None, description="Extra pod labels and annotations.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations on this service's objects and pods.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels on this service's objects and pods.")
    liveness_probe: K8sObject | None = Field(default=None, description="Replaces the default liveness probe entirely.")
    readiness_probe: K8sObject | None = Field(default=None, description="Replaces the default readiness probe entirely.")
    dynamo_namespace: str | None = Field(default=None, description="Deprecated and ignored: the Dynamo namespace is computed.")
    global_dynamo_namespace: bool = Field(default=False, description="Put the component in the global Dynamo namespace `dynamo`.")
    service_name: str | None = Field(default=None, description="Set by the operator (the service key).")
    ingress: IngressSpec | None = Field(default=None, description="Ingress for a frontend.")
    scaling_adapter: ScalingAdapter | None = Field(default=None, description="Opt-in scaling adapter.")
    autoscaling: K8sObject | None = Field(default=None, description="Deprecated and ignored.")
    model_ref: ModelRef | None = Field(default=None, description="Model served, for discovery.")
    epp_config: K8sObject | None = Field(default=None, description="Endpoint picker config (componentType `epp` only).")
    frontend_sidecar: FrontendSidecar | None = Field(default=None, description="Frontend sidecar container.")
    checkpoint: K8sObject | None = Field(default=None, description="CRIU checkpoint/restore settings (accepted, not acted on).")
    topology_constraint: ServiceTopologyConstraint | None = Field(default=None, description="Per-service topology constraint.")
    gpu_memory_service: K8sObject | None = Field(default=None, description="GPU memory service sidecar (accepted, not acted on).")
    failover: K8sObject | None = Field(default=None, description="Active/standby engines (accepted, not acted on).")

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
        description="The graph: service name (any case) to service spec. At most 25.",
    )
    envs: list[K8sObject] = Field(default_factory=list, description="Env vars for every service.")
    backend_framework: BackendFramework | None = Field(default=None, description="`sglang`, `vllm` or `trtllm`; detected from commands when unset.")
    pvcs: list[PVC] = Field(default_factory=list, max_length=MAX_PVCS, description="PVCs declared by the graph.")
    restart: Restart | None = Field(default=None, description="Restart request (must be unset at create).")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations for every child (service values win).")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels for every child (service values win).")
    topology_constraint: SpecTopologyConstraint | None = Field(default=None, description="Topology constraint for the graph.")
    priority_class_name: str | None = Field(default=None, description="PriorityClass of the graph's pods.")


class Condition(ApiModel):
    """A standard Kubernetes condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None
    observed_generation: int | None = None


class ServiceReplicaStatus(ApiModel):
    """Observed replicas of one service."""

    component_kind: str | None = Field(default=None, description="Kind of the workload: `Deployment` or `StatefulSet`.")
    component_name: str | None = Field(default=None, description="Deprecated: first of componentNames.")
    component_names: list[str] = Field(default_factory=list, description="Names of the workload objects.")
    replicas: int | None = None
    updated_replicas: int | None = None
    ready_replicas: int | None = None
    available_replicas: int | None = None


class RestartStatus(ApiModel):
    """Progress of the last restart request."""

    observed_id: str | None = None
    phase: str | None = None
    in_progress: list[str] = Field(default_factory=list)


class RollingUpdateStatus(ApiModel):
    """Progress of a managed rolling update."""

    phase: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    updated_services: list[str] = Field(default_factory=list)


class DynamoGraphDeploymentStatus(ApiModel):
    """`status` of a DynamoGraphDeployment."""

    state: Literal["initializing", "pending", "successful", "failed"] | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    services: dict[str, ServiceReplicaStatus] = Field(default_factory=dict)
    restart: RestartStatus | None = None
    rolling_update: RollingUpdateStatus | None = None


class ObjectMeta(ApiModel):
    """The parts of Kubernetes ObjectMeta the operator reads."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

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
    spec: DynamoGraphDeploymentSpec
    status: DynamoGraphDeploymentStatus | None = None


class DgdRef(ApiModel):
    """Which DGD service a scaling adapter drives."""

    name: str = Field(description="DGD name (same namespace).")
    service_name: str | None = Field(default=None, description="Service key in the DGD.")


class ScalingAdapterSpec(ApiModel):
    """`spec` of a DynamoGraphDeploymentScalingAdapter."""

    replicas: int = Field(ge=0, description="Desired replicas of the referenced service.")
    dgd_ref: DgdRef = Field(description="The DGD service this adapter scales.")


class ScalingAdapterStatus(ApiModel):
    """`status` of a DynamoGraphDeploymentScalingAdapter."""

    replicas: int | None = None
    selector: str | None = None
    last_scale_time: str | None = None


class DynamoGraphDeploymentScalingAdapter(ApiModel):
    """A DynamoGraphDeploymentScalingAdapter object."""

    api_version: Literal["nvidia.com/v1alpha1"] = Field(default=GROUP_VERSION, alias="apiVersion")
    kind: Literal["DynamoGraphDeploymentScalingAdapter"] = DGDSA_KIND
    metadata: ObjectMeta
    spec: ScalingAdapterSpec
    status: ScalingAdapterStatus | None = None
