"""Operator configuration: one typed object, read once from `DGD_*` environment variables.

The Helm chart sets exactly these variable names; the `dgd operator` command reads them once at
startup and passes the resulting `OperatorSettings` down. Nothing else in the operator reads
`os.environ`. The settings that shape child objects are handed to the pure builders as a
`BuildOptions` (see `to_build_options`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from dgd_operator.builders.options import BuildOptions

ENV_PREFIX = "DGD_"

LogFormat = Literal["text", "json"]
DiscoveryBackend = Literal["kubernetes", "etcd"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class SettingsError(ValueError):
    """A `DGD_*` variable has a value the operator cannot use; the message names the variable."""


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

    metrics_port: int = 8080
    """`DGD_METRICS_PORT`: Prometheus metrics of the operator itself; 0 disables the server."""

    health_port: int = 8081
    """`DGD_HEALTH_PORT`: liveness endpoint `/healthz`; 0 disables it."""

    bind_address: str = "0.0.0.0"
    """`DGD_BIND_ADDRESS`: address the metrics and health servers listen on."""

    mpi_ssh_secret_name: str = "mpi-run-ssh-secret"
    """`DGD_MPI_SSH_SECRET_NAME`: SSH key Secret mounted by TensorRT-LLM multinode pods."""

    log_level: str = "INFO"
    """`DGD_LOG_LEVEL`: DEBUG, INFO, WARNING or ERROR."""

    log_format: LogFormat = "text"
    """`DGD_LOG_FORMAT`: `text` for people, `json` for log pipelines."""

    planner_cluster_role_name: str | None = None
    """`DGD_PLANNER_CLUSTER_ROLE_NAME`: ClusterRole bound to `planner-serviceaccount` in every
    namespace with a planner service (none: the ServiceAccount is created without a binding)."""

    epp_cluster_role_name: str | None = None
    """`DGD_EPP_CLUSTER_ROLE_NAME`: the same for `epp-serviceaccount` (endpoint picker services)."""

    workers: int = 4
    """`DGD_WORKERS`: DGDs reconciled concurrently (one DGD is never reconciled twice at once)."""

    group_restart_budget: int = 5
    """`DGD_GROUP_RESTART_BUDGET`: whole-group restarts of one multinode group allowed within the
    window before its service is marked failed."""

    group_restart_window: float = 1800.0
    """`DGD_GROUP_RESTART_WINDOW`: the sliding window of the restart budget, in seconds (30 min)."""

    group_restart_backoff: float = 10.0
    """`DGD_GROUP_RESTART_BACKOFF`: seconds before the first group restart; doubles each time."""

    group_restart_backoff_cap: float = 300.0
    """`DGD_GROUP_RESTART_BACKOFF_CAP`: upper bound of the group restart delay, in seconds."""

    webhook_enabled: bool = False
    """`DGD_WEBHOOK_ENABLED`: serve the validating admission webhook (the chart sets true)."""

    webhook_port: int = 9443
    """`DGD_WEBHOOK_PORT`: HTTPS port of the webhook server."""

    webhook_host: str | None = None
    """`DGD_WEBHOOK_HOST`: host name the API server uses for a kopf-managed webhook (local runs)."""

    webhook_cert_dir: str | None = None
    """`DGD_WEBHOOK_CERT_DIR`: directory with tls.crt, tls.key (, ca.crt); unset: self-signed."""

    webhook_managed: bool | None = None
    """`DGD_WEBHOOK_MANAGED`: kopf manages the ValidatingWebhookConfiguration; default: true
    without a cert dir, false with one (the chart registers it)."""

    webhook_failure_policy: str = "Fail"
    """`DGD_WEBHOOK_FAILURE_POLICY`: Fail or Ignore (kopf-managed configuration only)."""

    webhook_operator_username: str | None = None
    """`DGD_WEBHOOK_OPERATOR_USERNAME`: the operator's own user; only it and a planner SA may
    change adapter-managed replicas (unset: rule off)."""

    extra: Mapping[str, str] = field(default_factory=dict)
    """Unrecognised `DGD_*` variables, kept so the command can warn about typos."""

    def to_build_options(
        self, image_pull_secrets: Mapping[str, tuple[str, ...]] | None = None
    ) -> BuildOptions:
        """The builder-facing subset of these settings (pull secrets come from discovery)."""
        return BuildOptions(
            discovery_backend=self.discovery_backend,
            nats_address=self.nats_address,
            etcd_address=self.etcd_address,
            mpi_ssh_secret_name=self.mpi_ssh_secret_name,
            image_pull_secrets=dict(image_pull_secrets or {}),
        )


_KNOWN = frozenset(
    {
        "WATCH_NAMESPACES",
        "NATS_ADDRESS",
        "ETCD_ADDRESS",
        "DISCOVERY_BACKEND",
        "IMAGE_PULL_SECRET_DISCOVERY",
        "METRICS_PORT",
        "HEALTH_PORT",
        "BIND_ADDRESS",
        "MPI_SSH_SECRET_NAME",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "WORKERS",
        "PLANNER_CLUSTER_ROLE_NAME",
        "EPP_CLUSTER_ROLE_NAME",
        "GROUP_RESTART_BUDGET",
        "GROUP_RESTART_WINDOW",
        "GROUP_RESTART_BACKOFF",
        "GROUP_RESTART_BACKOFF_CAP",
        "WEBHOOK_ENABLED",
        "WEBHOOK_PORT",
        "WEBHOOK_HOST",
        "WEBHOOK_CERT_DIR",
        "WEBHOOK_MANAGED",
        "WEBHOOK_FAILURE_POLICY",
        "WEBHOOK_OPERATOR_USERNAME",
    }
)
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def load_settings(environ: Mapping[str, str] | None = None) -> OperatorSettings:
    """Read `OperatorSettings` from `environ` (default `os.environ`); raise `SettingsError`."""
    env = os.environ if environ is None else environ
    values = {k[len(ENV_PREFIX) :]: v for k, v in env.items() if k.startswith(ENV_PREFIX)}

    def text(name: str) -> str | None:
        raw = values.get(name)
        return raw.strip() or None if raw is not None else None

    discovery = (text("DISCOVERY_BACKEND") or "kubernetes").lower()
    if discovery not in ("kubernetes", "etcd"):
        raise SettingsError(f"DGD_DISCOVERY_BACKEND: must be kubernetes or etcd, not {discovery!r}")
    log_format = (text("LOG_FORMAT") or "text").lower()
    if log_format not in ("text", "json"):
        raise SettingsError(f"DGD_LOG_FORMAT: must be text or json, not {log_format!r}")
    log_level = (text("LOG_LEVEL") or "INFO").upper()
    if log_level not in _LOG_LEVELS:
        raise SettingsError(f"DGD_LOG_LEVEL: must be one of {', '.join(_LOG_LEVELS)}, not {log_level!r}")
    namespaces = tuple(
        sorted({part.strip() for part in (values.get("WATCH_NAMESPACES") or "").split(",") if part.strip()})
    )
    return OperatorSettings(
        watch_namespaces=namespaces,
        nats_address=text("NATS_ADDRESS"),
        etcd_address=text("ETCD_ADDRESS"),
        discovery_backend="etcd" if discovery == "etcd" else "kubernetes",
        image_pull_secret_discovery=_parse_bool("IMAGE_PULL_SECRET_DISCOVERY", values, default=True),
        metrics_port=_parse_port("METRICS_PORT", values, default=8080),
        health_port=_parse_port("HEALTH_PORT", values, default=8081),
        bind_address=text("BIND_ADDRESS") or "0.0.0.0",
        mpi_ssh_secret_name=text("MPI_SSH_SECRET_NAME") or "mpi-run-ssh-secret",
        log_level=log_level,
        log_format="json" if log_format == "json" else "text",
        planner_cluster_role_name=text("PLANNER_CLUSTER_ROLE_NAME"),
        epp_cluster_role_name=text("EPP_CLUSTER_ROLE_NAME"),
        workers=_parse_int("WORKERS", values, default=4, minimum=1),
        group_restart_budget=_parse_int("GROUP_RESTART_BUDGET", values, default=5, minimum=0),
        group_restart_window=float(
            _parse_int("GROUP_RESTART_WINDOW", values, default=1800, minimum=1)
        ),
        group_restart_backoff=float(
            _parse_int("GROUP_RESTART_BACKOFF", values, default=10, minimum=0)
        ),
        group_restart_backoff_cap=float(
            _parse_int("GROUP_RESTART_BACKOFF_CAP", values, default=300, minimum=0)
        ),
        webhook_enabled=_parse_bool("WEBHOOK_ENABLED", values, default=False),
        webhook_port=_parse_port("WEBHOOK_PORT", values, default=9443),
        webhook_host=text("WEBHOOK_HOST"),
        webhook_cert_dir=text("WEBHOOK_CERT_DIR"),
        webhook_managed=(
            _parse_bool("WEBHOOK_MANAGED", values, default=False)
            if text("WEBHOOK_MANAGED") is not None
            else None
        ),
        webhook_failure_policy=text("WEBHOOK_FAILURE_POLICY") or "Fail",
        webhook_operator_username=text("WEBHOOK_OPERATOR_USERNAME"),
        extra={k: v for k, v in values.items() if k not in _KNOWN},
    )


def _parse_bool(name: str, values: Mapping[str, str], *, default: bool) -> bool:
    raw = values.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingsError(f"{ENV_PREFIX}{name}: expected true or false, not {raw!r}")


def _parse_int(name: str, values: Mapping[str, str], *, default: int, minimum: int) -> int:
    raw = values.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        number = int(raw.strip())
    except ValueError:
        raise SettingsError(f"{ENV_PREFIX}{name}: expected an integer, not {raw!r}") from None
    if number < minimum:
        raise SettingsError(f"{ENV_PREFIX}{name}: must be at least {minimum}, not {number}")
    return number


def _parse_port(name: str, values: Mapping[str, str], *, default: int) -> int:
    port = _parse_int(name, values, default=default, minimum=0)
    if port > 65535:
        raise SettingsError(f"{ENV_PREFIX}{name}: {port} is not a TCP port")
    return port
