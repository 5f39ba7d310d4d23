"""Per-component-type defaults of the main container (reference §2.7, late v1alpha1 numbers).

The probe numbers are the late code's and are part of our compatibility promise: keep them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FRONTEND_PORT = 8000
SYSTEM_PORT = 9090
NIXL_TELEMETRY_PORT = 19090
PLANNER_METRICS_PORT = 9085
EPP_GRPC_PORT = 9002
EPP_HEALTH_PORT = 9003
EPP_METRICS_PORT = 9090

PLANNER_SERVICE_ACCOUNT = "planner-serviceaccount"
EPP_SERVICE_ACCOUNT = "epp-serviceaccount"
SHELL_COMMAND = ("/bin/sh", "-c")


def _http_probe(path: str, port: str, **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, **timing}


def _grpc_probe(**timing: int) -> dict[str, Any]:
    return {"grpc": {"port": EPP_HEALTH_PORT, "service": "inference-extension"}, **timing}


def _port(name: str, number: int) -> dict[str, Any]:
    return {"name": name, "containerPort": number, "protocol": "TCP"}


@dataclass(frozen=True)
class ComponentDefaults:
    """What the operator puts in a component type's main container before user overrides."""

    command: tuple[str, ...] = SHELL_COMMAND
    args: tuple[str, ...] = ()
    ports: tuple[dict[str, Any], ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    liveness_probe: dict[str, Any] | None = None
    readiness_probe: dict[str, Any] | None = None
    startup_probe: dict[str, Any] | None = None
    service_account: str | None = None
    termination_grace_period_seconds: int | None = None
    service_port: dict[str, Any] = field(
        default_factory=lambda: {"name": "system", "port": SYSTEM_PORT, "targetPort": "system", "protocol": "TCP"}
    )


_WORKER_LIVENESS = _http_probe("/live", "system", periodSeconds=5, timeoutSeconds=4, failureThreshold=1)
_WORKER_READINESS = _http_probe("/health", "system", periodSeconds=10, timeoutSeconds=4, failureThreshold=3)
# 720 x 10 s: engines may load weights for up to two hours before the liveness probe takes over.
_WORKER_STARTUP = _http_probe("/live", "system", periodSeconds=10, timeoutSeconds=5, failureThreshold=720)

_WORKER = ComponentDefaults(
    ports=(_port("system", SYSTEM_PORT), _port("nixl", NIXL_TELEMETRY_PORT)),
    env=(
        ("DYN_HEALTH_CHECK_ENABLED", "false"),
        ("DYN_SYSTEM_ENABLED", "true"),
        ("DYN_SYSTEM_PORT", str(SYSTEM_PORT)),
        ("DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS", '["generate"]'),
        ("NIXL_TELEMETRY_ENABLE", "n"),
        ("NIXL_TELEMETRY_EXPORTER", "prometheus"),
        ("NIXL_TELEMETRY_PROMETHEUS_PORT", str(NIXL_TELEMETRY_PORT)),
    ),
    liveness_probe=_WORKER_LIVENESS,
    readiness_probe=_WORKER_READINESS,
    startup_probe=_WORKER_STARTUP,
)

_DEFAULTS: dict[str, ComponentDefaults] = {
    "frontend": ComponentDefaults(
        command=("python3",),
        args=("-m", "dynamo.frontend"),
        ports=(_port("http", FRONTEND_PORT),),
        env=(("DYNAMO_PORT", str(FRONTEND_PORT)), ("DYN_HTTP_PORT", str(FRONTEND_PORT))),
        liveness_probe=_http_probe(
            "/live", "http", initialDelaySeconds=15, periodSeconds=10, timeoutSeconds=1, failureThreshold=3
        ),
        readiness_probe=_http_probe(
            "/health", "http", initialDelaySeconds=10, periodSeconds=10, timeoutSeconds=3, failureThreshold=3
        ),
        service_port={"name": "http", "port": FRONTEND_PORT, "targetPort": "http", "protocol": "TCP"},
    ),
    "worker": _WORKER,
    "prefill": _WORKER,
    "decode": _WORKER,
    "planner": ComponentDefaults(
        ports=(_port("metrics", PLANNER_METRICS_PORT), _port("system", SYSTEM_PORT)),
        env=(("DYN_SYSTEM_PORT", str(SYSTEM_PORT)), ("PLANNER_PROMETHEUS_PORT", str(PLANNER_METRICS_PORT))),
        liveness_probe=_WORKER_LIVENESS,
        readiness_probe=_WORKER_READINESS,
        startup_probe=_WORKER_STARTUP,
        service_account=PLANNER_SERVICE_ACCOUNT,
    ),
    "epp": ComponentDefaults(
        ports=(
            _port("grpc", EPP_GRPC_PORT),
            _port("grpc-health", EPP_HEALTH_PORT),
            _port("metrics", EPP_METRICS_PORT),
        ),
        env=(("NVIDIA_VISIBLE_DEVICES", "void"), ("RUST_LOG", "info"), ("USE_STREAMING", "true")),
        liveness_probe=_grpc_probe(initialDelaySeconds=5, periodSeconds=10),
        readiness_probe=_grpc_probe(initialDelaySeconds=5, periodSeconds=10),
        startup_probe=_grpc_probe(periodSeconds=10, failureThreshold=180),
        service_account=EPP_SERVICE_ACCOUNT,
        termination_grace_period_seconds=130,
        service_port={"name": "grpc", "port": EPP_GRPC_PORT, "targetPort": EPP_GRPC_PORT, "appProtocol": "http2", "protocol": "TCP"},
    ),
}

_PLAIN = ComponentDefaults()


def component_defaults(component_type: str) -> ComponentDefaults:
    """Defaults for `componentType`; unknown or empty types get a bare `/bin/sh -c` container."""
    return _DEFAULTS.get(component_type, _PLAIN)
