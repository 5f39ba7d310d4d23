"""Per-graph and per-service facts every builder needs, computed once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from dgd_operator.api import constants
from dgd_operator.api.engine_args import Backend, BackendError, resolve_backend
from dgd_operator.api.models import DynamoGraphDeployment, ServiceSpec
from dgd_operator.api.naming import component_name, dynamo_namespace, service_object_name
from dgd_operator.builders.errors import BuildError
from dgd_operator.builders.labels import service_annotations
from dgd_operator.builders.options import BuildOptions, DiscoveryBackend


@dataclass(frozen=True)
class GraphContext:
    """Facts about the whole DGD: name, namespace, options, effective discovery backend."""

    dgd: DynamoGraphDeployment
    namespace: str
    options: BuildOptions

    @property
    def name(self) -> str:
        """The DGD name."""
        return self.dgd.metadata.name

    @cached_property
    def discovery_backend(self) -> DiscoveryBackend:
        """`nvidia.com/dynamo-discovery-backend` on the DGD, else the operator default."""
        value = self.dgd.metadata.annotations.get(constants.ANNOTATION_DISCOVERY_BACKEND)
        if value is None:
            return self.options.discovery_backend
        lowered = value.strip().lower()
        if lowered == "kubernetes":
            return "kubernetes"
        if lowered == "etcd":
            return "etcd"
        raise BuildError(
            f"metadata.annotations.{constants.ANNOTATION_DISCOVERY_BACKEND}",
            f"must be 'kubernetes' or 'etcd', got {value!r}",
        )

    @property
    def kube_discovery(self) -> bool:
        """True when pods discover each other through the Kubernetes API (the default)."""
        return self.discovery_backend == "kubernetes"

    @cached_property
    def epp_service(self) -> str | None:
        """The service of type `epp` (at most one per graph; the first by name if several)."""
        for name in sorted(self.dgd.spec.services):
            if self.dgd.spec.services[name].component_type == constants.COMPONENT_EPP:
                return name
        return None

    @property
    def has_epp(self) -> bool:
        """Whether the graph has an endpoint picker (then workers are labelled for its pool)."""
        return self.epp_service is not None

    def service(
        self, service: str, *, restart_id: str | None = None, worker_hash: str | None = None
    ) -> ServiceContext:
        """The context of one service of this graph (`worker_hash`: its worker generation)."""
        return ServiceContext(
            self, service, self.dgd.spec.services[service], restart_id, worker_hash
        )


@dataclass(frozen=True)
class ServiceContext:
    """Facts about one service: names, effective labels/annotations, role, backend."""

    graph: GraphContext
    service: str
    spec: ServiceSpec
    restart_id: str | None = None
    worker_hash: str | None = None
    """The worker generation this service's workload belongs to (managed rollouts, §9); None
    for services updated in place."""

    @property
    def path(self) -> str:
        """Field path of this service, for error messages."""
        return f"spec.services.{self.service}"

    @property
    def component_type(self) -> str:
        """`componentType` ("" when unset: a plain container)."""
        return self.spec.component_type or ""

    @property
    def is_worker_class(self) -> bool:
        """`worker`, `prefill` or `decode`: the components an InferencePool selects."""
        return self.component_type in constants.WORKER_COMPONENT_TYPES

    @property
    def name(self) -> str:
        """`<dgd>-<lower(service)>`: workload name and `nvidia.com/selector` value."""
        return component_name(self.graph.name, self.service)

    @property
    def workload_name(self) -> str:
        """The Deployment name: `name`, plus `-<worker hash>` for a worker generation."""
        return f"{self.name}-{self.worker_hash}" if self.worker_hash else self.name

    @property
    def service_object_name(self) -> str:
        """Name of the Kubernetes Service / Ingress of this component."""
        return service_object_name(self.graph.name, self.service)

    @property
    def dynamo_namespace(self) -> str:
        """Runtime namespace (`<k8s ns>-<dgd>` or `dynamo`); `dynamoNamespace` is ignored."""
        return dynamo_namespace(
            self.graph.namespace,
            self.graph.name,
            global_namespace=self.spec.global_dynamo_namespace,
        )

    @cached_property
    def annotations(self) -> dict[str, str]:
        """Service annotations over the DGD's behaviour annotations over `spec.annotations`."""
        return service_annotations(self.graph.dgd, self.spec)

    @cached_property
    def user_labels(self) -> dict[str, str]:
        """Service labels over `spec.labels`."""
        return {**self.graph.dgd.spec.labels, **self.spec.labels}

    @property
    def metrics_enabled(self) -> bool:
        """False only when `nvidia.com/enable-metrics` is "false" (DGD or service)."""
        return self.annotations.get(constants.ANNOTATION_ENABLE_METRICS, "").lower() != "false"

    @property
    def container_discovery_mode(self) -> bool:
        """`nvidia.com/dynamo-kube-discovery-mode: container` (default is per pod)."""
        mode = self.annotations.get(constants.ANNOTATION_KUBE_DISCOVERY_MODE, "")
        return mode.strip().lower() == "container"

    @cached_property
    def backend_framework(self) -> Backend | None:
        """Engine framework of a worker (detected from command+args > `backendFramework`).

        None for non-worker components and undetectable workers. A mismatch between the
        detected and the declared framework is a `BuildError`, as in Dynamo.
        """
        main = self.spec.extra_pod_spec.main_container if self.spec.extra_pod_spec else None
        try:
            backend = resolve_backend(
                self.component_type, main, self.graph.dgd.spec.backend_framework
            )
        except BackendError as exc:
            raise BuildError(self.path, str(exc)) from exc
        return None if backend == "noop" else backend
