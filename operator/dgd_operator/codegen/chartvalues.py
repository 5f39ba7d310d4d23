"""The Helm chart's values, as one pydantic model: the single source of `values.yaml` and its schema.

The chart's `values.yaml` (defaults, one `# --` comment per key in helm-docs style) and
`values.schema.json` (JSON Schema draft-07, which helm checks on every install, upgrade, lint
and template) are both generated from `ChartValues`, so a documented key always exists, has a
type, and has the default the templates expect. Edit the model, then run `make crds`, or

    python -m dgd_operator.codegen.chartvalues --write --chart-dir charts/dgd-operator
    python -m dgd_operator.codegen.chartvalues --check --chart-dir ...   # exit 1 if stale

The keys mirror the operator's environment settings (`DGD_*`, `dgd_operator.settings`), and
their defaults are taken from `OperatorSettings` (never written twice); the Deployment template
maps one to the other. Where the chart deliberately differs (JSON logs, the webhook on), the
field says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from dgd_operator.settings import (
    DiscoveryBackend,
    FailurePolicy,
    LogFormat,
    LogLevel,
    OperatorSettings,
)

# The operator's own defaults: every chart value that maps to a `DGD_*` variable starts here.
SETTINGS = OperatorSettings()
VALUES_FILE = "values.yaml"
SCHEMA_FILE = "values.schema.json"
# Draft-07 is understood by every helm 3 release (older ones embed a draft-07-only validator).
JSON_SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"

VALUES_HEADER = """\
# Default values for the dgd-operator chart.
# GENERATED from dgd_operator.codegen.chartvalues.ChartValues: edit the model, then run
#   make crds
# Every key is described by its `# --` comment and typed in values.schema.json.
"""

Port = Annotated[int, Field(ge=1, le=65535)]
DnsLabel = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
PullPolicy = Literal["Always", "IfNotPresent", "Never"]


class ValuesModel(BaseModel):
    """Base for every values section: camelCase keys as in Helm charts, unknown keys rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )


class ImageValues(ValuesModel):
    """A container image reference."""

    repository: str = Field(
        "dgd-operator",
        description="Image repository of the operator (built from the repository's Dockerfile).",
    )
    tag: str = Field("", description="Image tag; empty means the chart's appVersion.")
    pull_policy: PullPolicy = Field("IfNotPresent", description="Kubernetes imagePullPolicy.")


class DependencyImageValues(ValuesModel):
    """An image reference whose tag is always explicit (third-party images)."""

    repository: str = Field(description="Image repository.")
    tag: str = Field(min_length=1, description="Image tag.")
    pull_policy: PullPolicy = Field("IfNotPresent", description="Kubernetes imagePullPolicy.")


class ImagePullSecret(ValuesModel):
    """A reference to a Secret of type kubernetes.io/dockerconfigjson in the release namespace."""

    name: str = Field(min_length=1, description="Secret name.")


class ServiceAccountValues(ValuesModel):
    """The operator's ServiceAccount."""

    create: bool = Field(True, description="Create the ServiceAccount the operator runs as.")
    name: str = Field("", description="ServiceAccount name; empty means the release's full name.")
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations on the ServiceAccount (for example a cloud IAM role binding).",
    )


class RbacValues(ValuesModel):
    """RBAC objects granting the operator what it reconciles."""

    create: bool = Field(
        True,
        description=(
            "Create the operator's ClusterRole and ClusterRoleBinding (cluster-wide mode) or one "
            "Role and RoleBinding per watched namespace (namespace mode)."
        ),
    )
    aggregate_to_default_roles: bool = Field(
        True,
        description=(
            "Add ClusterRoles that extend the built-in admin, edit and view roles to "
            "DynamoGraphDeployments and their scaling adapters, so namespace users can manage graphs."
        ),
    )


class LogValues(ValuesModel):
    """Operator logging."""

    level: LogLevel = Field(SETTINGS.log_level, description="Log level (DGD_LOG_LEVEL).")
    # Deliberately unlike the operator's default (text, for a terminal).
    format: LogFormat = Field(
        "json", description="Log format (DGD_LOG_FORMAT): json for log collectors, text for humans."
    )


class ServiceMonitorValues(ValuesModel):
    """A Prometheus Operator ServiceMonitor for the operator's metrics."""

    enabled: bool = Field(
        False,
        description="Create a ServiceMonitor (needs the monitoring.coreos.com CRDs in the cluster).",
    )
    interval: str = Field("30s", pattern=r"^([0-9]+(ms|s|m|h))+$", description="Scrape interval.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels on the ServiceMonitor, e.g. the release label your Prometheus selects.",
    )


Duration = Annotated[str, Field(pattern=r"^([0-9]+(ms|s|m|h))+$")]


class PodMonitorValues(ValuesModel):
    """Prometheus Operator PodMonitors for the pods of every graph the operator runs."""

    enabled: bool = Field(
        False,
        description=(
            "Create PodMonitors for frontend, worker, planner and router (EPP) pods (needs the "
            "monitoring.coreos.com CRDs); they select pods in the watched namespaces, or in all "
            "namespaces in cluster-wide mode."
        ),
    )
    interval: Duration = Field("15s", description="Scrape interval of graph pods.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels on the PodMonitors, e.g. the release label your Prometheus selects.",
    )


class PrometheusRuleValues(ValuesModel):
    """Alerting rules on the operator's metrics."""

    enabled: bool = Field(
        False,
        description=(
            "Create a PrometheusRule: graph not Ready, reconcile errors, webhook failures, "
            "multinode group restart budget exhausted (needs the monitoring.coreos.com CRDs)."
        ),
    )
    graph_not_ready_for: Duration = Field(
        "15m", description="How long a graph may stay not Ready before it alerts."
    )
    reconcile_errors_for: Duration = Field(
        "15m", description="How long reconciles may keep failing before it alerts."
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels on the PrometheusRule, e.g. the label your Prometheus selects.",
    )


class DashboardValues(ValuesModel):
    """Grafana dashboards (operator; graph serving) in a ConfigMap for Grafana's sidecar."""

    enabled: bool = Field(False, description="Create the ConfigMap holding the dashboards' JSON.")
    namespace: str = Field(
        "", description="Namespace of the ConfigMap; empty means the release namespace."
    )
    labels: dict[str, str] = Field(
        default_factory=lambda: {"grafana_dashboard": "1"},
        description="Labels on the ConfigMap; the Grafana sidecar's default selects grafana_dashboard.",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations on the ConfigMap (e.g. grafana_folder for the sidecar's folder).",
    )


class MetricsValues(ValuesModel):
    """The operator's Prometheus metrics endpoint."""

    port: Port = Field(
        SETTINGS.metrics_port, description="Port of the /metrics endpoint (DGD_METRICS_PORT)."
    )
    service: bool = Field(
        True, description="Create a ClusterIP Service in front of the metrics port."
    )
    service_monitor: ServiceMonitorValues = Field(
        default_factory=ServiceMonitorValues, description="Prometheus Operator integration."
    )
    pod_monitors: PodMonitorValues = Field(
        default_factory=PodMonitorValues, description="Scraping of the graphs' pods."
    )
    prometheus_rule: PrometheusRuleValues = Field(
        default_factory=PrometheusRuleValues, description="Alerting rules."
    )
    dashboards: DashboardValues = Field(
        default_factory=DashboardValues, description="Grafana dashboards."
    )


class HealthValues(ValuesModel):
    """The operator's health endpoints, used by the liveness and readiness probes."""

    port: Port = Field(
        SETTINGS.health_port,
        description=(
            "Port of /healthz (liveness) and /readyz (readiness: webhook certificate loaded and "
            "serving; on the leader, the reconciler started) (DGD_HEALTH_PORT)."
        ),
    )


class LeaderElectionValues(ValuesModel):
    """Leader election among operator replicas on a coordination.k8s.io Lease (DGD_LEADER_ELECTION_*)."""

    # On in the chart (two replicas); the operator's own default is off, for a single local run.
    enabled: bool = Field(
        True,
        description=(
            "Replicas compete for the Lease `<fullname>` in the release namespace; only its "
            "holder reconciles, every replica serves the webhooks (DGD_LEADER_ELECTION_ENABLED). "
            "Required when replicaCount is above 1."
        ),
    )
    lease_duration: float = Field(
        SETTINGS.leader_election.lease_duration,
        gt=0,
        description=(
            "Seconds a standby waits after the last renewal it saw before taking over: the "
            "failover time when a leader dies unannounced (DGD_LEADER_ELECTION_LEASE_DURATION)."
        ),
    )
    renew_deadline: float = Field(
        SETTINGS.leader_election.renew_deadline,
        gt=0,
        description=(
            "Seconds the leader keeps trying to renew before it stops reconciling and restarts; "
            "below leaseDuration (DGD_LEADER_ELECTION_RENEW_DEADLINE)."
        ),
    )
    retry_period: float = Field(
        SETTINGS.leader_election.retry_period,
        gt=0,
        description=(
            "Seconds between renewals and between a standby's attempts; below renewDeadline "
            "(DGD_LEADER_ELECTION_RETRY_PERIOD)."
        ),
    )


class PodDisruptionBudgetValues(ValuesModel):
    """A PodDisruptionBudget for the operator's replicas."""

    enabled: bool = Field(
        True,
        description=(
            "Create a PodDisruptionBudget so a node drain evicts at most maxUnavailable "
            "replicas at once (the webhooks keep a live endpoint)."
        ),
    )
    max_unavailable: int = Field(
        1,
        ge=1,
        description=(
            "Replicas a voluntary disruption may take down at once (never blocks a drain of a "
            "single replica, unlike minAvailable: 1)."
        ),
    )


class PersistenceValues(ValuesModel):
    """Storage of a bundled StatefulSet: a PersistentVolumeClaim, or an emptyDir when disabled."""

    enabled: bool = Field(
        False, description="Keep data in a PersistentVolumeClaim; when false an emptyDir is used."
    )
    size: str = Field("1Gi", description="Requested volume size.")
    storage_class_name: str = Field(
        "", description="StorageClass of the claim; empty means the cluster default."
    )


class NatsValues(ValuesModel):
    """A minimal single-node NATS server with JetStream, for the request plane and KV events."""

    enabled: bool = Field(
        True,
        description=(
            "Run NATS in the release namespace and point the operator (DGD_NATS_ADDRESS) at it; "
            "overrides natsAddress. On by default, as in Dynamo's platform chart: graphs need it."
        ),
    )
    image: DependencyImageValues = Field(
        default_factory=lambda: DependencyImageValues(repository="nats", tag="2.11-alpine"),
        description="NATS server image.",
    )
    persistence: PersistenceValues = Field(
        default_factory=PersistenceValues, description="JetStream storage."
    )
    resources: dict[str, Any] = Field(
        default_factory=lambda: {"requests": {"cpu": "100m", "memory": "128Mi"}},
        description="Container resources of the NATS server.",
    )


class EtcdValues(ValuesModel):
    """A minimal single-member etcd, needed only for discoveryBackend etcd."""

    enabled: bool = Field(
        False,
        description=(
            "Run etcd in the release namespace and point the operator (DGD_ETCD_ADDRESS) at it; "
            "overrides etcdAddress."
        ),
    )
    image: DependencyImageValues = Field(
        default_factory=lambda: DependencyImageValues(
            repository="quay.io/coreos/etcd", tag="v3.5.21"
        ),
        description="etcd image.",
    )
    persistence: PersistenceValues = Field(
        default_factory=PersistenceValues, description="etcd data storage."
    )
    resources: dict[str, Any] = Field(
        default_factory=lambda: {"requests": {"cpu": "100m", "memory": "128Mi"}},
        description="Container resources of etcd.",
    )


class IssuerRefValues(ValuesModel):
    """A cert-manager issuer reference."""

    name: str = Field(
        "",
        description=(
            "Issuer (or ClusterIssuer) that signs the webhook certificate; empty means a "
            "self-signed Issuer created by the chart."
        ),
    )
    kind: Literal["Issuer", "ClusterIssuer"] = Field(
        "Issuer", description="Kind of the issuer named in name."
    )


class CertManagerValues(ValuesModel):
    """cert-manager integration for the webhook's serving certificate."""

    enabled: bool = Field(
        False,
        description=(
            "Issue the webhook certificate with cert-manager (needs cert-manager in the "
            "cluster; its CA injector fills the caBundle) instead of the operator's own."
        ),
    )
    issuer_ref: IssuerRefValues = Field(
        default_factory=IssuerRefValues, description="Issuer of the webhook certificate."
    )


class WebhookValues(ValuesModel):
    """The validating admission webhook served by the operator (DGD_WEBHOOK_*)."""

    # On in the chart (it registers the webhook and mounts its certificate); the operator's
    # own default is off, for local runs.
    enabled: bool = Field(
        True,
        description=(
            "Serve the webhooks (DGD_WEBHOOK_ENABLED): conversion between nvidia.com/v1alpha1 "
            "and v1beta1 (the CRDs need it to serve v1alpha1), validation of "
            "DynamoGraphDeployments and their scaling adapters on create and update (bad "
            "graphs are refused by kubectl apply with every field path listed, Dynamo's update "
            "rules are enforced) and Dynamo's defaults on new graphs."
        ),
    )
    port: Port = Field(
        SETTINGS.webhook.port,
        description="Container port of the webhook's HTTPS server (DGD_WEBHOOK_PORT).",
    )
    failure_policy: FailurePolicy = Field(
        SETTINGS.webhook.failure_policy,
        description=(
            "What the API server does when the webhook cannot be reached: Fail refuses the "
            "write (as Dynamo does), Ignore admits it unchecked."
        ),
    )
    timeout_seconds: int = Field(
        10, ge=1, le=30, description="How long the API server waits for the webhook (1-30)."
    )
    cert_manager: CertManagerValues = Field(
        default_factory=CertManagerValues,
        description=(
            "cert-manager for the serving certificate. When disabled the operator issues its "
            "own into a Secret, rotates it before expiry and writes its CA into the webhook "
            "configurations and the CRDs."
        ),
    )


def _default_resources() -> dict[str, Any]:
    return {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


def _default_pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _default_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


class GroupRestartValues(ValuesModel):
    """Whole-group restart policy of multinode services."""

    budget: int = Field(
        SETTINGS.group_restart_budget,
        ge=0,
        description=(
            "Group restarts allowed within windowSeconds before the service is marked failed "
            "(DGD_GROUP_RESTART_BUDGET)."
        ),
    )
    window_seconds: int = Field(
        int(SETTINGS.group_restart_window),
        ge=1,
        description="Sliding window of the budget (DGD_GROUP_RESTART_WINDOW).",
    )
    backoff_seconds: int = Field(
        int(SETTINGS.group_restart_backoff),
        ge=0,
        description="Delay before the first restart; doubles each time (DGD_GROUP_RESTART_BACKOFF).",
    )
    backoff_cap_seconds: int = Field(
        int(SETTINGS.group_restart_backoff_cap),
        ge=0,
        description="Upper bound of the delay (DGD_GROUP_RESTART_BACKOFF_CAP).",
    )


class IngressDefaultsValues(ValuesModel):
    """Operator-wide Ingress defaults for frontends without their own `ingress` block."""

    enabled: bool = Field(
        SETTINGS.ingress_enabled,
        description="Give every frontend an Ingress by default (DGD_INGRESS_ENABLED).",
    )
    class_name: str = Field(
        SETTINGS.ingress_class_name or "",
        description="ingressClassName of default Ingresses (DGD_INGRESS_CLASS_NAME); empty: none.",
    )
    tls_secret_name: str = Field(
        SETTINGS.ingress_tls_secret_name or "",
        description="TLS Secret of default Ingresses (DGD_INGRESS_TLS_SECRET_NAME); empty: no TLS.",
    )
    host_suffix: str = Field(
        SETTINGS.ingress_host_suffix or "",
        description="Host suffix of default Ingress hosts (DGD_INGRESS_HOST_SUFFIX); empty: `local`.",
    )


class IstioValues(ValuesModel):
    """Istio VirtualService/DestinationRule rendering for frontends and the EPP."""

    enabled: bool = Field(
        SETTINGS.istio_enabled, description="Render Istio objects (DGD_ISTIO_ENABLED)."
    )
    gateway: str = Field(
        SETTINGS.istio_gateway or "",
        description="Gateway of default VirtualServices (DGD_ISTIO_GATEWAY).",
    )
    tls_mode: Literal["SIMPLE", "DISABLE", "ISTIO_MUTUAL", "MUTUAL"] = Field(
        SETTINGS.istio_tls_mode,
        description="TLS mode of the EPP DestinationRule (DGD_ISTIO_TLS_MODE).",
    )
    insecure_skip_verify: bool = Field(
        SETTINGS.istio_insecure_skip_verify,
        description="Skip verifying the EPP certificate (DGD_ISTIO_INSECURE_SKIP_VERIFY).",
    )
    client_certificate: str = Field(
        SETTINGS.istio_client_certificate or "",
        description="Client certificate path for MUTUAL TLS (DGD_ISTIO_CLIENT_CERTIFICATE).",
    )
    private_key: str = Field(
        SETTINGS.istio_private_key or "",
        description="Private key path for MUTUAL TLS (DGD_ISTIO_PRIVATE_KEY).",
    )
    ca_certificates: str = Field(
        SETTINGS.istio_ca_certificates or "",
        description="CA certificates path (DGD_ISTIO_CA_CERTIFICATES).",
    )


class ChartValues(ValuesModel):
    """Every value the dgd-operator chart accepts, with its default."""

    name_override: str = Field("", description="Replaces the chart name in resource names.")
    fullname_override: str = Field("", description="Replaces the full `<release>-<chart>` name.")
    replica_count: int = Field(
        2,
        ge=1,
        description=(
            "Operator replicas. With more than one, leaderElection.enabled must stay true: one "
            "leader reconciles, the others serve admission and conversion and take over when "
            "it dies (a failurePolicy: Fail webhook never has zero endpoints during a restart)."
        ),
    )
    leader_election: LeaderElectionValues = Field(
        default_factory=LeaderElectionValues, description="Leader election among replicas."
    )
    pod_disruption_budget: PodDisruptionBudgetValues = Field(
        default_factory=PodDisruptionBudgetValues,
        description="PodDisruptionBudget of the operator's replicas.",
    )
    image: ImageValues = Field(default_factory=ImageValues, description="Operator image.")
    image_pull_secrets: list[ImagePullSecret] = Field(
        default_factory=list, description="Secrets used to pull the operator image."
    )
    service_account: ServiceAccountValues = Field(
        default_factory=ServiceAccountValues, description="ServiceAccount of the operator."
    )
    rbac: RbacValues = Field(default_factory=RbacValues, description="RBAC objects.")
    watch_namespaces: list[DnsLabel] = Field(
        default_factory=lambda: list(SETTINGS.watch_namespaces),
        description=(
            "Namespaces the operator watches (DGD_WATCH_NAMESPACES). Empty: every namespace, with a "
            "ClusterRole. Set: only these, with one Role each and no cluster-wide grants."
        ),
    )
    discovery_backend: DiscoveryBackend = Field(
        SETTINGS.discovery_backend,
        description=(
            "How graph components find each other (DGD_DISCOVERY_BACKEND); etcd needs etcdAddress "
            "or etcd.enabled."
        ),
    )
    upgrade_crds: bool = Field(
        SETTINGS.upgrade_crds,
        description=(
            "Cluster-wide mode: the operator creates or replaces its CRDs in place on start "
            "(DGD_UPGRADE_CRDS), so a chart upgrade upgrades them (Helm installs crds/ only "
            "once); never deletes them. Grants create on CRDs and update of these three. False, "
            "or namespace mode: a cluster admin applies crds/ after each upgrade."
        ),
    )
    image_pull_secret_discovery: bool = Field(
        SETTINGS.image_pull_secret_discovery,
        description=(
            "Add matching dockerconfigjson Secrets of a graph's namespace as imagePullSecrets of "
            "its pods (DGD_IMAGE_PULL_SECRET_DISCOVERY)."
        ),
    )
    nats_address: str = Field(
        SETTINGS.nats_address or "",
        description=(
            "Address of an existing NATS server, e.g. nats://nats.nats:4222 (DGD_NATS_ADDRESS); "
            "ignored when nats.enabled."
        ),
    )
    etcd_address: str = Field(
        SETTINGS.etcd_address or "",
        description=(
            "Address of an existing etcd, e.g. etcd.etcd:2379 (DGD_ETCD_ADDRESS); ignored when "
            "etcd.enabled."
        ),
    )
    mpi_ssh_secret_name: str = Field(
        SETTINGS.mpi_ssh_secret_name,
        min_length=1,
        description=(
            "Secret holding the SSH key for mpirun-launched multinode TensorRT-LLM workers "
            "(DGD_MPI_SSH_SECRET_NAME); the operator creates it in a graph's namespace if missing."
        ),
    )
    topology_domain_keys: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Topology domain names (packDomain values) mapped to the node label key of their "
            "domains, added to or replacing the defaults (DGD_TOPOLOGY_DOMAIN_KEYS); e.g. "
            "{rack: example.com/rack}. Defaults: region, zone, datacenter, block, rack, numa on "
            "topology.kubernetes.io/<domain>, host on kubernetes.io/hostname, nvlink on "
            "nvidia.com/gpu.clique."
        ),
    )
    planner_cluster_role_name: str = Field(
        SETTINGS.planner_cluster_role_name or "",
        description=(
            "ClusterRole bound to planner-serviceaccount in each namespace with a planner service "
            "(DGD_PLANNER_CLUSTER_ROLE_NAME); empty: the ServiceAccount gets no binding. The "
            "operator is granted `bind` on it."
        ),
    )
    epp_cluster_role_name: str = Field(
        SETTINGS.epp_cluster_role_name or "",
        description=(
            "ClusterRole bound to epp-serviceaccount for endpoint-picker services "
            "(DGD_EPP_CLUSTER_ROLE_NAME); empty: no binding. The operator is granted `bind` on it."
        ),
    )
    model_express_url: str = Field(
        SETTINGS.model_express_url or "",
        description="Model Express server URL injected into graph pods (DGD_MODEL_EXPRESS_URL).",
    )
    prometheus_endpoint: str = Field(
        SETTINGS.prometheus_endpoint or "",
        description="Prometheus URL injected into planner pods (DGD_PROMETHEUS_ENDPOINT).",
    )
    ingress: IngressDefaultsValues = Field(
        default_factory=IngressDefaultsValues, description="Default frontend Ingress."
    )
    istio: IstioValues = Field(default_factory=IstioValues, description="Istio objects.")
    group_restart: GroupRestartValues = Field(
        default_factory=lambda: GroupRestartValues(),
        description="Whole-group restarts of multinode services (leader + workers restart together).",
    )
    workers: int = Field(
        SETTINGS.workers,
        ge=1,
        description=(
            "Graphs reconciled concurrently (DGD_WORKERS); one graph is never reconciled twice at once."
        ),
    )
    log: LogValues = Field(default_factory=LogValues, description="Operator logging.")
    metrics: MetricsValues = Field(default_factory=MetricsValues, description="Prometheus metrics.")
    health: HealthValues = Field(default_factory=HealthValues, description="Health endpoint.")
    webhook: WebhookValues = Field(
        default_factory=WebhookValues, description="Validating admission webhook."
    )
    resources: dict[str, Any] = Field(
        default_factory=_default_resources, description="Container resources of the operator."
    )
    pod_annotations: dict[str, str] = Field(
        default_factory=dict, description="Extra annotations on the operator pod."
    )
    pod_labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels on the operator pod."
    )
    pod_security_context: dict[str, Any] = Field(
        default_factory=_default_pod_security_context,
        description="Pod securityContext of the operator (and the bundled NATS and etcd).",
    )
    security_context: dict[str, Any] = Field(
        default_factory=_default_security_context,
        description="Container securityContext of the operator (and the bundled NATS and etcd).",
    )
    priority_class_name: str = Field("", description="PriorityClass of the operator pod.")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node selector of the operator pod."
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list, description="Tolerations of the operator pod."
    )
    affinity: dict[str, Any] = Field(
        default_factory=dict, description="Affinity of the operator pod."
    )
    extra_env: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Extra environment variables (Kubernetes EnvVar objects) of the operator container.",
    )
    nats: NatsValues = Field(default_factory=NatsValues, description="Bundled NATS (JetStream).")
    etcd: EtcdValues = Field(default_factory=EtcdValues, description="Bundled etcd.")


# ---------------------------------------------------------------------------------------------
# values.schema.json


def build_values_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft-07, references inlined) that helm checks values against."""
    raw = ChartValues.model_json_schema(by_alias=True, mode="validation")
    definitions: dict[str, Any] = raw.pop("$defs", {})
    schema = _inline(raw, definitions)
    assert isinstance(schema, dict)
    # Helm passes `global` to every chart (and parents set it for subcharts); accept it untyped.
    schema["properties"]["global"] = {
        "type": "object",
        "description": "Values shared with parent and sibling charts; unused by this chart.",
    }
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    """Replace `$ref`s by their definitions and drop pydantic's `title` noise, recursively."""
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        # Keys beside $ref (the field's own description, default) win over the referenced model's.
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline(merged, definitions)
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title":
            continue
        if key == "properties":
            result[key] = {name: _inline(sub, definitions) for name, sub in value.items()}
        else:
            result[key] = _inline(value, definitions)
    return result


def render_schema_json() -> str:
    """Return the text of values.schema.json."""
    return json.dumps(build_values_schema(), indent=2) + "\n"


# ---------------------------------------------------------------------------------------------
# values.yaml


def render_values_yaml() -> str:
    """Return the text of values.yaml: every default, each key preceded by its `# --` comment."""
    lines: list[str] = []
    _emit_model(ChartValues(), indent=0, lines=lines)
    return VALUES_HEADER + "\n" + "\n".join(lines) + "\n"


def _emit_model(model: BaseModel, *, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for name, field in type(model).model_fields.items():
        if not field.description:
            raise ValueError(f"{type(model).__name__}.{name} has no description")
        key = field.alias or name
        if indent == 0 and lines:
            lines.append("")  # a blank line between top-level keys, as in hand-written charts
        lines.extend(
            f"{pad}# {'-- ' if i == 0 else ''}{text}"
            for i, text in enumerate(textwrap.wrap(field.description, width=96 - indent))
        )
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{key}:")
            _emit_model(value, indent=indent + 2, lines=lines)
            continue
        plain = _plain(value)
        dumped = yaml.safe_dump({key: plain}, sort_keys=False, default_flow_style=False, width=1000)
        lines.extend(f"{pad}{line}" for line in dumped.rstrip("\n").split("\n"))


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def default_values() -> dict[str, Any]:
    """Return the defaults as helm sees them (camelCase keys, plain data)."""
    return ChartValues().model_dump(by_alias=True, mode="json")


# ---------------------------------------------------------------------------------------------
# CLI


def generated_files() -> dict[str, str]:
    """Map each generated file name (relative to the chart directory) to its expected text."""
    return {VALUES_FILE: render_values_yaml(), SCHEMA_FILE: render_schema_json()}


def stale_files(chart_dir: Path) -> list[str]:
    """Return the generated files under `chart_dir` that are missing or differ from the model."""
    stale = []
    for name, text in generated_files().items():
        path = chart_dir / name
        if not path.is_file() or path.read_text() != text:
            stale.append(name)
    return stale


def main(argv: list[str] | None = None) -> int:
    """Write or check values.yaml and values.schema.json; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m dgd_operator.codegen.chartvalues",
        description="Generate the dgd-operator chart's values.yaml and values.schema.json.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate the files")
    mode.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    parser.add_argument(
        "--chart-dir", type=Path, required=True, metavar="DIR", help="the chart's directory"
    )
    args = parser.parse_args(argv)
    chart_dir: Path = args.chart_dir
    if args.write:
        for name, text in generated_files().items():
            (chart_dir / name).write_text(text)
            print(f"wrote {chart_dir / name}")
        return 0
    stale = stale_files(chart_dir)
    for name in stale:
        print(
            f"{chart_dir / name} is stale; run `make crds`",
            file=sys.stderr,
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
