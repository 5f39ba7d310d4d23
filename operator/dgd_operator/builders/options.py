"""Operator settings that shape the objects built for a DGD.

Everything here comes from the operator's configuration (Helm values, command line, the
namespace's Secrets), never from the DGD itself. Builders take a `BuildOptions` and nothing
else from the outside world, which keeps them pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from dgd_operator.api.constants import DEFAULT_TOPOLOGY_DOMAIN_KEYS
from dgd_operator.builders.gang import PodGroupApi

DiscoveryBackend = Literal["kubernetes", "etcd"]
IstioTLSMode = Literal["SIMPLE", "DISABLE", "ISTIO_MUTUAL", "MUTUAL"]


def _no_secrets() -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({})


def _default_topology_keys() -> Mapping[str, str]:
    return MappingProxyType(dict(DEFAULT_TOPOLOGY_DOMAIN_KEYS))


@dataclass(frozen=True)
class BuildOptions:
    """Operator-wide settings consumed by the builders (all optional, Dynamo's defaults)."""

    discovery_backend: DiscoveryBackend = "kubernetes"
    """Default discovery backend; a DGD annotation `nvidia.com/dynamo-discovery-backend`
    overrides it. `kubernetes` adds the per-DGD discovery ServiceAccount/Role/RoleBinding, a
    ClusterIP Service per component, the discovery labels and `DYN_DISCOVERY_BACKEND`."""

    nats_address: str | None = None
    """Injected as `NATS_SERVER` into every main container (unless the user sets it)."""

    etcd_address: str | None = None
    """Injected as `ETCD_ENDPOINTS` into every main container (unless the user sets it)."""

    model_express_url: str | None = None
    """Injected as `MODEL_EXPRESS_URL` into every main container (unless the user sets it)."""

    prometheus_endpoint: str | None = None
    """Injected as `PROMETHEUS_ENDPOINT` into every main container (unless the user sets it)."""

    image_pull_secrets: Mapping[str, tuple[str, ...]] = field(default_factory=_no_secrets)
    """Registry host (e.g. `nvcr.io`, `docker.io`) to names of `kubernetes.io/dockerconfigjson`
    Secrets of the DGD's namespace that authenticate to it. The operator discovers these; the
    builders add the ones matching a service's `mainContainer.image` to `imagePullSecrets`."""

    mpi_ssh_secret_name: str = "mpi-run-ssh-secret"
    """Secret with the SSH key that TensorRT-LLM multinode pods use for mpirun."""

    ingress_enabled: bool = False
    """Give frontends without their own `ingress` a default one (host = DGD name)."""

    ingress_controller_class_name: str | None = None
    """IngressClass of the default frontend Ingress; no Ingress is built without a class."""

    ingress_tls_secret_name: str | None = None
    """TLS Secret of the default frontend Ingress."""

    ingress_host_suffix: str | None = None
    """Domain appended to Ingress hosts (`<prefix><host>.<suffix>`); `local` when unset."""

    istio_gateway: str | None = None
    """Istio Gateway (`<ns>/<name>`) of the default frontend VirtualService; with it, frontends
    without their own `ingress` get a VirtualService for host `<dgd>.<suffix>`."""

    istio_enabled: bool = False
    """Istio service mesh: the EPP Service gets a DestinationRule (TLS to the EPP's gRPC port)."""

    istio_tls_mode: IstioTLSMode = "SIMPLE"
    """`trafficPolicy.tls.mode` of the EPP DestinationRule."""

    istio_insecure_skip_verify: bool = True
    """`trafficPolicy.tls.insecureSkipVerify` of the EPP DestinationRule (the EPP's certificate
    is self-signed)."""

    istio_client_certificate: str | None = None
    """MUTUAL mode: path of the client certificate in the Envoy proxy."""

    istio_private_key: str | None = None
    """MUTUAL mode: path of the client private key in the Envoy proxy."""

    istio_ca_certificates: str | None = None
    """MUTUAL mode: path of the CA bundle in the Envoy proxy."""

    inference_pool_api: bool = True
    """Whether the API server serves `inference.networking.k8s.io/v1` InferencePools (the
    operator detects it through discovery). Without it no InferencePool is built and the graph
    gets a warning; `dgd render` assumes it is served."""

    termination_grace_period_seconds: int = 60
    """Pod `terminationGracePeriodSeconds` unless `extraPodSpec` sets one."""

    default_shared_memory: str = "8Gi"
    """Size of the `/dev/shm` emptyDir when a service does not set `sharedMemory.size`."""

    pod_group_api: PodGroupApi | None = None
    """Where the cluster serves PodGroups (the operator detects it through discovery). With it,
    every multinode group gets a gang PodGroup and its pods join it; without it groups are
    placed pod by pod, as before Kubernetes 1.37. `dgd render` assumes it is not served."""

    topology_domain_keys: Mapping[str, str] = field(default_factory=_default_topology_keys)
    """Topology domain name (`rack`, `zone`, ...) to the node label key whose values are its
    domains. A `packDomain` becomes a required pod affinity with that key as topology key;
    a domain missing here is not acted on (the status and `dgd validate` say so)."""

    def registry_secrets(self, registry: str) -> tuple[str, ...]:
        """Secret names configured for `registry` (host compared case-insensitively)."""
        wanted = normalize_registry(registry)
        names: list[str] = []
        for key, secrets in self.image_pull_secrets.items():
            if normalize_registry(key) == wanted:
                names.extend(secrets)
        return tuple(sorted(set(names)))


_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def normalize_registry(registry: str) -> str:
    """Reduce a registry reference such as `https://index.docker.io/v1/` to a host (`docker.io`)."""
    host = registry.strip().lower()
    for scheme in ("https://", "http://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
    host = host.split("/", 1)[0]
    return "docker.io" if host in _DOCKER_HUB_ALIASES else host


def image_registry(image: str) -> str:
    """The registry host of a container image reference (`docker.io` for Docker Hub short names)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return normalize_registry(first)
    return "docker.io"
