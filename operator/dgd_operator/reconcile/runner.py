"""Run the operator: kopf's reactor with our registry, settings and controller."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from dgd_operator.admission import enable_admission
from dgd_operator.handlers import kopf_settings, register
from dgd_operator.reconcile.controller import Controller
from dgd_operator.settings import OperatorSettings


def liveness_endpoint(settings: OperatorSettings) -> str | None:
    """kopf's liveness URL for the health port (None when disabled)."""
    if not settings.health_port:
        return None
    return f"http://{settings.bind_address}:{settings.health_port}/healthz"


async def run_operator(
    settings: OperatorSettings,
    *,
    controller: Controller | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
    liveness: bool = True,
) -> None:
    """Run until `stop_flag` is set (or the process is signalled), in the current event loop.

    Namespaces come from `settings.watch_namespaces` (empty: the whole cluster). Peering is off
    (`standalone`): run one replica with `strategy: Recreate`.
    """
    registry = kopf.OperatorRegistry()
    controller = controller or Controller(settings)
    register(registry, controller)
    operator_kopf_settings = kopf_settings()
    if settings.watch_namespaces:
        # Exact namespaces need no cluster-wide namespace/CRD scanning, which a namespace-mode
        # Role does not allow (kopf would retry 403s for minutes before falling back).
        operator_kopf_settings.scanning.disabled = True
    # No-op unless DGD_WEBHOOK_ENABLED: the chart's fail-closed webhook needs this server.
    enable_admission(registry, operator_kopf_settings, settings)
    namespaces = list(settings.watch_namespaces)
    extra: dict[str, Any] = {}
    if liveness:
        extra["liveness_endpoint"] = liveness_endpoint(settings)
    try:
        await kopf.operator(
            registry=registry,
            settings=operator_kopf_settings,
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            **extra,
        )
    finally:
        await controller.stop()  # idempotent; also covers a crash before kopf's cleanup
