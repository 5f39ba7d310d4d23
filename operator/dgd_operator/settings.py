"""Operator configuration: one typed object, read once from `DGD_*` environment variables.

Every setting is a field of `OperatorSettings` (or of its nested `WebhookSettings`), with its
default written exactly once, here. The environment variable is derived from the field:
`DGD_` + the upper-cased name (`DGD_WEBHOOK_` + name for the webhook's fields). `load_settings`
reads every variable in one loop over the fields, parsing by the field's type, and the objects
validate themselves on construction, so a bad value fails at startup naming its variable.

The Helm chart sets exactly these variables (`dgd_operator.codegen.chartvalues` takes the
chart's defaults from these fields); the `dgd operator` command reads them once and passes the
resulting `OperatorSettings` down. Nothing else in the operator reads `os.environ`. The settings
that shape child objects are handed to the pure builders as a `BuildOptions`
(see `to_build_options`).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from dgd_operator.api.constants import DEFAULT_TOPOLOGY_DOMAIN_KEYS, DYNAMO_COMPATIBLE_VERSION
from dgd_operator.builders.options import BuildOptions, IstioTLSMode

ENV_PREFIX = "DGD_"

LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
DiscoveryBackend = Literal["kubernetes", "etcd"]
FailurePolicy = Literal["Fail", "Ignore"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_MAX_PORT = 65535


class SettingsError(ValueError):
    """A `DGD_*` variable has a value the operator cannot use; the message names the variable."""


def _bounded(default: Any, *, minimum: float | None = None, maximum: float | None = None) -> Any:
    """A field with a numeric range, checked on construction (see `_validate`)."""
    return field(default=default, metadata={"minimum": minimum, "maximum": maximum})


@dataclass(frozen=True)
class WebhookSettings:
    """How the operator serves admission (env var = `DGD_WEBHOOK_` + upper name)."""

    enabled: bool = False
    """`DGD_WEBHOOK_ENABLED`: serve the webhooks (conversion, validation, defaulting) on one
    HTTPS port (the chart sets true)."""

    port: int = _bounded(9443, minimum=1, maximum=_MAX_PORT)
    """`DGD_WEBHOOK_PORT`: HTTPS port of the webhook server (Dynamo's default too)."""

    host: str | None = None
    """`DGD_WEBHOOK_HOST`: host name the API server uses to reach an operator-registered
    webhook (and a SAN of the self-signed certificate); default: the listening address."""

    cert_dir: str | None = None
    """`DGD_WEBHOOK_CERT_DIR`: directory with a mounted `tls.crt`, `tls.key` (and optionally
    `ca.crt`), e.g. from cert-manager; unset: the operator issues its own certificate."""

    secret_name: str | None = None
    """`DGD_WEBHOOK_SECRET_NAME`: without `cert_dir`, keep the issued certificate in this
    `kubernetes.io/tls` Secret of `namespace` (created, shared by all replicas, rotated before
    expiry) and write its CA into the webhook configurations and CRDs; unset: a certificate in
    memory, for local runs."""

    namespace: str | None = None
    """`DGD_WEBHOOK_NAMESPACE`: the operator's namespace (of the Secret and the Service)."""

    service_name: str | None = None
    """`DGD_WEBHOOK_SERVICE_NAME`: the webhook Service; the certificate is issued for its DNS
    names."""

    configuration_name: str | None = None
    """`DGD_WEBHOOK_CONFIGURATION_NAME`: name of the chart's Validating- and
    MutatingWebhookConfiguration whose caBundle the operator keeps (with `secret_name`)."""

    managed: bool | None = None
    """`DGD_WEBHOOK_MANAGED`: the operator registers the Validating- and
    MutatingWebhookConfiguration `dgd-operator.nvidia.com` itself with a URL (needs RBAC on
    them) and deletes them when it stops. Default: true with neither `cert_dir` nor
    `secret_name` (nobody else knows the in-memory CA)."""

    failure_policy: FailurePolicy = "Fail"
    """`DGD_WEBHOOK_FAILURE_POLICY`: `Fail` (default, like Dynamo) or `Ignore`, for
    operator-registered configurations (the chart sets its own from `webhook.failurePolicy`)."""

    timeout_seconds: int = _bounded(10, minimum=1, maximum=30)
    """`DGD_WEBHOOK_TIMEOUT_SECONDS`: how long the API server waits for an operator-registered
    webhook before applying the failure policy."""

    origin_version: str = DYNAMO_COMPATIBLE_VERSION
    """`DGD_WEBHOOK_ORIGIN_VERSION`: stamped by the defaulting webhook on new graphs as
    `nvidia.com/dynamo-operator-origin-version` (the Dynamo release whose defaults apply)."""

    reuse_port: bool = False
    """`DGD_WEBHOOK_REUSE_PORT`: listen with SO_REUSEPORT, so several operator processes on one
    host share the port and the kernel spreads connections over the live ones (a local stand-in
    for a Service in front of replicas; in a cluster every pod has its own address)."""

    operator_username: str | None = None
    """`DGD_WEBHOOK_OPERATOR_USERNAME`: the operator's own user name, e.g.
    `system:serviceaccount:dgd-system:dgd-operator`. Only it (and a planner ServiceAccount) may
    change the replicas of an adapter-managed service; unset disables that rule."""

    def __post_init__(self) -> None:
        _validate(self, f"{ENV_PREFIX}WEBHOOK_")

    @property
    def is_managed(self) -> bool:
        """Whether the operator registers the webhook configurations itself (see `managed`)."""
        if self.managed is not None:
            return self.managed
        return self.cert_dir is None and self.secret_name is None


@dataclass(frozen=True)
class LeaderElectionSettings:
    """Which replica reconciles (env var = `DGD_LEADER_ELECTION_` + upper name).

    Replicas compete for a `coordination.k8s.io/v1` Lease, as client-go controllers do: only
    its holder runs the reconciler, every replica serves the webhooks. The timings have
    client-go's meaning and defaults.
    """

    enabled: bool = False
    """`DGD_LEADER_ELECTION_ENABLED`: compete for the Lease before reconciling (the chart sets
    true and runs two replicas); off: reconcile at once, one replica only."""

    namespace: str | None = None
    """`DGD_LEADER_ELECTION_NAMESPACE`: namespace of the Lease (the chart: its release
    namespace); unset: the first watched namespace, else `default`."""

    lease_name: str = "dgd-operator"
    """`DGD_LEADER_ELECTION_LEASE_NAME`: name of the Lease."""

    identity: str | None = None
    """`DGD_LEADER_ELECTION_IDENTITY`: this replica's `holderIdentity`; unset: host name (the
    pod name in a cluster) and process id."""

    lease_duration: float = _bounded(15.0, minimum=1)
    """`DGD_LEADER_ELECTION_LEASE_DURATION`: seconds a standby waits after the last renewal it
    saw before it takes the Lease: the failover time after a leader dies unannounced."""

    renew_deadline: float = _bounded(10.0, minimum=0.1)
    """`DGD_LEADER_ELECTION_RENEW_DEADLINE`: seconds the leader keeps trying to renew before it
    stops reconciling and exits (must be below the lease duration)."""

    retry_period: float = _bounded(2.0, minimum=0.05)
    """`DGD_LEADER_ELECTION_RETRY_PERIOD`: seconds between renewals, and between a standby's
    attempts to acquire."""

    def __post_init__(self) -> None:
        _validate(self, f"{ENV_PREFIX}LEADER_ELECTION_")
        if self.renew_deadline >= self.lease_duration:
            raise SettingsError(
                f"{ENV_PREFIX}LEADER_ELECTION_RENEW_DEADLINE ({self.renew_deadline:g}) must be "
                f"below {ENV_PREFIX}LEADER_ELECTION_LEASE_DURATION ({self.lease_duration:g})"
            )
        if self.retry_period >= self.renew_deadline:
            raise SettingsError(
                f"{ENV_PREFIX}LEADER_ELECTION_RETRY_PERIOD ({self.retry_period:g}) must be "
                f"below {ENV_PREFIX}LEADER_ELECTION_RENEW_DEADLINE ({self.renew_deadline:g})"
            )


@dataclass(frozen=True)
class OperatorSettings:
    """Everything the operator process is configured with (env var = `DGD_` + upper name)."""

    watch_namespaces: tuple[str, ...] = ()
    """`DGD_WATCH_NAMESPACES`: comma-separated namespaces to reconcile; empty means all."""

    nats_address: str | None = None
    """`DGD_NATS_ADDRESS`: NATS URL injected into every pod as `NATS_SERVER`."""

    etcd_address: str | None = None
    """`DGD_ETCD_ADDRESS`: etcd endpoints injected into every pod as `ETCD_ENDPOINTS`."""

    discovery_backend: DiscoveryBackend = "kubernetes"
    """`DGD_DISCOVERY_BACKEND`: `kubernetes` (default) or `etcd`; a DGD annotation overrides it."""

    image_pull_secret_discovery: bool = True
    """`DGD_IMAGE_PULL_SECRET_DISCOVERY`: add matching docker-registry Secrets of the DGD's
    namespace to pods' `imagePullSecrets`."""

    metrics_port: int = _bounded(8080, minimum=0, maximum=_MAX_PORT)
    """`DGD_METRICS_PORT`: Prometheus metrics of the operator itself; 0 disables the server."""

    health_port: int = _bounded(8081, minimum=0, maximum=_MAX_PORT)
    """`DGD_HEALTH_PORT`: `/healthz` (liveness) and `/readyz` (readiness); 0 disables them."""

    bind_address: str = "0.0.0.0"
    """`DGD_BIND_ADDRESS`: address the metrics, health and webhook servers listen on."""

    mpi_ssh_secret_name: str = "mpi-run-ssh-secret"
    """`DGD_MPI_SSH_SECRET_NAME`: SSH key Secret mounted by TensorRT-LLM multinode pods."""

    log_level: LogLevel = "INFO"
    """`DGD_LOG_LEVEL`: DEBUG, INFO, WARNING, ERROR or CRITICAL."""

    log_format: LogFormat = "text"
    """`DGD_LOG_FORMAT`: `text` for people, `json` for log pipelines."""

    planner_cluster_role_name: str | None = None
    """`DGD_PLANNER_CLUSTER_ROLE_NAME`: ClusterRole bound to `planner-serviceaccount` in every
    namespace with a planner service (none: the ServiceAccount is created without a binding)."""

    epp_cluster_role_name: str | None = None
    """`DGD_EPP_CLUSTER_ROLE_NAME`: the same for `epp-serviceaccount` (endpoint picker services)."""

    workers: int = _bounded(8, minimum=1)
    """`DGD_WORKERS`: DGDs reconciled concurrently (one DGD is never reconciled twice at once)."""

    group_restart_budget: int = _bounded(5, minimum=0)
    """`DGD_GROUP_RESTART_BUDGET`: whole-group restarts of one multinode group allowed within the
    window before its service is marked failed."""

    group_restart_window: float = _bounded(1800.0, minimum=1)
    """`DGD_GROUP_RESTART_WINDOW`: the sliding window of the restart budget, in seconds (30 min)."""

    group_restart_backoff: float = _bounded(10.0, minimum=0)
    """`DGD_GROUP_RESTART_BACKOFF`: seconds before the first group restart; doubles each time."""

    group_restart_backoff_cap: float = _bounded(300.0, minimum=0)
    """`DGD_GROUP_RESTART_BACKOFF_CAP`: upper bound of the group restart delay, in seconds."""

    model_express_url: str | None = None
    """`DGD_MODEL_EXPRESS_URL`: Model Express server injected into every pod as
    `MODEL_EXPRESS_URL` (Helm `modelExpressURL` in Dynamo)."""

    prometheus_endpoint: str | None = None
    """`DGD_PROMETHEUS_ENDPOINT`: Prometheus URL injected into every pod as
    `PROMETHEUS_ENDPOINT` (the planner reads metrics there)."""

    ingress_enabled: bool = False
    """`DGD_INGRESS_ENABLED`: frontends without their own `ingress` get a default Ingress for
    host `<dgd>.<suffix>` (needs `DGD_INGRESS_CLASS_NAME`)."""

    ingress_class_name: str | None = None
    """`DGD_INGRESS_CLASS_NAME`: IngressClass of the default frontend Ingress."""

    ingress_tls_secret_name: str | None = None
    """`DGD_INGRESS_TLS_SECRET_NAME`: TLS Secret of the default frontend Ingress."""

    ingress_host_suffix: str | None = None
    """`DGD_INGRESS_HOST_SUFFIX`: domain of frontend hosts (`<prefix><host>.<suffix>`);
    `local` when unset."""

    istio_enabled: bool = False
    """`DGD_ISTIO_ENABLED`: the cluster runs the Istio mesh; the EPP Service gets a
    DestinationRule."""

    istio_gateway: str | None = None
    """`DGD_ISTIO_GATEWAY`: Istio Gateway (`<ns>/<name>`) of the default frontend
    VirtualService; unset: no default VirtualService."""

    istio_tls_mode: IstioTLSMode = "SIMPLE"
    """`DGD_ISTIO_TLS_MODE`: TLS mode of the EPP DestinationRule (SIMPLE, DISABLE,
    ISTIO_MUTUAL or MUTUAL)."""

    istio_insecure_skip_verify: bool = True
    """`DGD_ISTIO_INSECURE_SKIP_VERIFY`: skip verifying the EPP's certificate."""

    istio_client_certificate: str | None = None
    """`DGD_ISTIO_CLIENT_CERTIFICATE`: MUTUAL mode, client certificate path in the proxy."""

    istio_private_key: str | None = None
    """`DGD_ISTIO_PRIVATE_KEY`: MUTUAL mode, client private key path in the proxy."""

    istio_ca_certificates: str | None = None
    """`DGD_ISTIO_CA_CERTIFICATES`: MUTUAL mode, CA bundle path in the proxy."""

    topology_domain_keys: tuple[str, ...] = ()
    """`DGD_TOPOLOGY_DOMAIN_KEYS`: comma-separated `domain=node-label-key` pairs that add to or
    replace the default map of `packDomain` names to node labels (Grove's domains `region`,
    `zone`, `datacenter`, `block`, `rack`, `numa` on `topology.kubernetes.io/<domain>`, `host`
    on `kubernetes.io/hostname`, `nvlink` on `nvidia.com/gpu.clique`)."""

    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    """The admission webhook (`DGD_WEBHOOK_*`); it listens on `bind_address`."""

    upgrade_crds: bool = True
    """`DGD_UPGRADE_CRDS`: on start, create or replace in place (never delete) the operator's
    CRDs from the copies it ships, as Dynamo's `upgradeCRD` does, so upgrading the release
    upgrades the CRDs; false leaves them to the cluster admin."""

    leader_election: LeaderElectionSettings = field(default_factory=LeaderElectionSettings)
    """Leader election among replicas (`DGD_LEADER_ELECTION_*`)."""

    @property
    def lease_namespace(self) -> str:
        """Namespace of the leader-election Lease (see `LeaderElectionSettings.namespace`)."""
        if self.leader_election.namespace:
            return self.leader_election.namespace
        return self.watch_namespaces[0] if self.watch_namespaces else "default"

    extra: Mapping[str, str] = field(default_factory=dict, metadata={"env": False})
    """Unrecognised `DGD_*` variables (without the prefix), kept so the command warns of typos."""

    def __post_init__(self) -> None:
        _validate(self, ENV_PREFIX)
        self.topology_keys()  # a malformed pair fails at startup, naming the variable

    def topology_keys(self) -> dict[str, str]:
        """The map of topology domain names to node label keys: defaults, then the setting."""
        keys = dict(DEFAULT_TOPOLOGY_DOMAIN_KEYS)
        for pair in self.topology_domain_keys:
            domain, sep, key = (part.strip() for part in pair.partition("="))
            if not sep or not domain or not key:
                raise SettingsError(
                    f"{ENV_PREFIX}TOPOLOGY_DOMAIN_KEYS: expected domain=node-label-key pairs, "
                    f"not {pair!r}"
                )
            keys[domain] = key
        return keys

    def to_build_options(
        self,
        image_pull_secrets: Mapping[str, tuple[str, ...]] | None = None,
        *,
        inference_pool_api: bool = False,
    ) -> BuildOptions:
        """The builder-facing subset of these settings.

        Pull secrets and whether the InferencePool API is served come from the cluster
        (discovery), not from the configuration; until discovery says the API is served no
        InferencePool is built (applying one would fail).
        """
        return BuildOptions(
            discovery_backend=self.discovery_backend,
            nats_address=self.nats_address,
            etcd_address=self.etcd_address,
            model_express_url=self.model_express_url,
            prometheus_endpoint=self.prometheus_endpoint,
            mpi_ssh_secret_name=self.mpi_ssh_secret_name,
            image_pull_secrets=dict(image_pull_secrets or {}),
            ingress_enabled=self.ingress_enabled,
            ingress_controller_class_name=self.ingress_class_name,
            ingress_tls_secret_name=self.ingress_tls_secret_name,
            ingress_host_suffix=self.ingress_host_suffix,
            istio_enabled=self.istio_enabled,
            istio_gateway=self.istio_gateway,
            istio_tls_mode=self.istio_tls_mode,
            istio_insecure_skip_verify=self.istio_insecure_skip_verify,
            istio_client_certificate=self.istio_client_certificate,
            istio_private_key=self.istio_private_key,
            istio_ca_certificates=self.istio_ca_certificates,
            inference_pool_api=inference_pool_api,
            topology_domain_keys=self.topology_keys(),
        )


# ---------------------------------------------------------------------------------------------
# The variables, derived from the fields


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, the attribute path and the field it fills."""

    variable: str
    """`DGD_...`, as the chart and `dgd operator` spell it."""
    path: tuple[str, ...]
    """Attribute path from `OperatorSettings`, e.g. `("webhook", "port")`."""
    type: Any
    """The field's resolved type annotation."""
    default: Any
    """The field's default value."""
    minimum: float | None = None
    """Smallest accepted value of a numeric setting."""
    maximum: float | None = None
    """Largest accepted value of a numeric setting."""


def settings_fields() -> tuple[Setting, ...]:
    """Every `DGD_*` variable the operator reads, in declaration order (nested ones inline)."""
    return tuple(_settings(OperatorSettings, ENV_PREFIX, ()))


def _settings(cls: type[Any], prefix: str, path: tuple[str, ...]) -> Iterator[Setting]:
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        if not item.metadata.get("env", True):
            continue
        kind = hints[item.name]
        variable = prefix + item.name.upper()
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            yield from _settings(kind, variable + "_", (*path, item.name))
            continue
        default = (
            item.default_factory()
            if item.default_factory is not dataclasses.MISSING
            else item.default
        )
        yield Setting(
            variable,
            (*path, item.name),
            kind,
            default,
            item.metadata.get("minimum"),
            item.metadata.get("maximum"),
        )


def load_settings(environ: Mapping[str, str] | None = None) -> OperatorSettings:
    """Read `OperatorSettings` from `environ` (default `os.environ`); raise `SettingsError`.

    A variable that is unset or blank keeps the field's default.
    """
    env = os.environ if environ is None else environ
    known = settings_fields()
    values: dict[tuple[str, ...], Any] = {}
    for setting in known:
        raw = env.get(setting.variable)
        if raw is not None and raw.strip():
            values[setting.path] = _parse(setting.variable, setting.type, raw.strip())
    names = {s.variable for s in known}
    values[("extra",)] = {
        key[len(ENV_PREFIX) :]: value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key not in names
    }
    settings: OperatorSettings = _build(OperatorSettings, (), values)
    return settings


def _build(cls: type[Any], path: tuple[str, ...], values: Mapping[tuple[str, ...], Any]) -> Any:
    """`cls` from the parsed values under `path`; nested settings objects recursively."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        here = (*path, item.name)
        if dataclasses.is_dataclass(hints[item.name]):
            kwargs[item.name] = _build(hints[item.name], here, values)
        elif here in values:
            kwargs[item.name] = values[here]
    return cls(**kwargs)


def to_environ(settings: OperatorSettings) -> dict[str, str]:
    """The `DGD_*` variables that reproduce `settings` (only those differing from the default).

    The inverse of `load_settings`, for tools that start an operator process.
    """
    env: dict[str, str] = {}
    for setting in settings_fields():
        value: Any = settings
        for part in setting.path:
            value = getattr(value, part)
        if value != setting.default and value is not None:
            env[setting.variable] = _format(value)
    return env


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _parse(variable: str, kind: Any, raw: str) -> Any:
    """`raw` as a value of the field type `kind` (one of the few types settings use)."""
    options = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    if _is_optional(kind):
        return _parse(variable, options[0], raw)
    if typing.get_origin(kind) is Literal:
        for choice in options:
            if str(choice).lower() == raw.lower():
                return choice
        expected = ", ".join(str(choice) for choice in options)
        raise SettingsError(f"{variable}: must be one of {expected}, not {raw!r}")
    if kind is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise SettingsError(f"{variable}: expected true or false, not {raw!r}")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise SettingsError(f"{variable}: expected {noun}, not {raw!r}") from None
    if typing.get_origin(kind) is tuple:
        return tuple(sorted({part.strip() for part in raw.split(",") if part.strip()}))
    if kind is str:
        return raw
    raise TypeError(f"{variable}: settings of type {kind!r} are not supported")


def _is_optional(kind: Any) -> bool:
    return isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind)


def _validate(obj: Any, prefix: str) -> None:
    """Check every field against its type's choices and its range; raise `SettingsError`."""
    hints = typing.get_type_hints(type(obj))
    for item in dataclasses.fields(obj):
        value = getattr(obj, item.name)
        kind = hints[item.name]
        variable = prefix + item.name.upper()
        if value is None and _is_optional(kind):
            continue
        if typing.get_origin(kind) is Literal and value not in typing.get_args(kind):
            expected = ", ".join(str(choice) for choice in typing.get_args(kind))
            raise SettingsError(f"{variable}: must be one of {expected}, not {value!r}")
        minimum, maximum = item.metadata.get("minimum"), item.metadata.get("maximum")
        if minimum is not None and value < minimum:
            raise SettingsError(f"{variable}: must be at least {minimum}, not {value}")
        if maximum is not None and value > maximum:
            raise SettingsError(f"{variable}: must be at most {maximum}, not {value}")
