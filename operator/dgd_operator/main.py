"""Run the operator: kopf's reactor with our registry, settings and controller, and the webhooks.

This is where the pieces meet: the API client (`controllerkit.kube`, made only here), the
controller (`reconcile`), the watch handlers (`handlers`) and the webhook server
(`admission`), which runs beside kopf so that conversion never waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from dgd_operator.admission import Admission
from dgd_operator.admission.crd_upgrade import packaged_crds, upgrade_crds
from dgd_operator.admission.webhooks import CONVERT_PATH
from dgd_operator.api.constants import MANAGED_BY
from dgd_operator.controllerkit.kube import Credentials, KubeClient
from dgd_operator.controllerkit.kubeapi import ApiError
from dgd_operator.handlers import kopf_settings, register
from dgd_operator.reconcile.controller import Controller
from dgd_operator.reconcile.resources import KINDS
from dgd_operator.settings import OperatorSettings

logger = logging.getLogger("dgd_operator")


def load_credentials() -> Credentials:
    """Credentials from the in-cluster service account, else from `$KUBECONFIG`/~/.kube/config."""
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    if info is None:
        raise RuntimeError("no Kubernetes credentials: not in a cluster and no kubeconfig found")
    return Credentials.from_connection_info(info)


def connect() -> KubeClient:
    """The operator's API client: our field manager, our CRD kinds, rotating credentials."""
    return KubeClient(
        load_credentials(),
        field_manager=MANAGED_BY,
        kinds=KINDS,
        reload_credentials=load_credentials,
    )


def conversion_client_config(settings: OperatorSettings) -> dict[str, Any] | None:
    """Where the CRDs' conversion webhook must point: the operator's Service when the settings
    name it (the chart's); None when the operator does not know (the live setting is kept)."""
    webhook = settings.webhook
    if not (webhook.enabled and webhook.namespace and webhook.service_name):
        return None
    service = {"name": webhook.service_name, "namespace": webhook.namespace}
    return {"service": {**service, "path": CONVERT_PATH, "port": 443}}


async def install_crds(settings: OperatorSettings, client: KubeClient) -> None:
    """Create or upgrade the operator's CRDs in place (`DGD_UPGRADE_CRDS`); never deletes.

    Without the right to (a cluster admin manages the CRDs) the operator goes on with the CRDs
    it finds, with a warning.
    """
    try:
        await upgrade_crds(
            client, packaged_crds(), client_config=conversion_client_config(settings)
        )
    except ApiError as exc:
        if exc.status != 403:
            raise
        logger.warning("CRDs not upgraded (DGD_UPGRADE_CRDS): %s", exc)


def liveness_endpoint(settings: OperatorSettings) -> str | None:
    """kopf's liveness URL for the health port (None when disabled)."""
    if not settings.health_port:
        return None
    return f"http://{settings.bind_address}:{settings.health_port}/healthz"


def build_registry(
    settings: OperatorSettings, controller: Controller
) -> tuple[kopf.OperatorRegistry, kopf.OperatorSettings]:
    """kopf's registry and settings with every handler of the operator."""
    registry = kopf.OperatorRegistry()
    register(registry, controller, connect)
    operator_kopf_settings = kopf_settings()
    if settings.watch_namespaces:
        # Exact namespaces need no cluster-wide namespace/CRD scanning, which a namespace-mode
        # Role does not allow (kopf would retry 403s for minutes before falling back).
        operator_kopf_settings.scanning.disabled = True
    return registry, operator_kopf_settings


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
    (`standalone`): run one replica with `strategy: Recreate`. With the webhook enabled its
    server starts first (the API server may need conversion before kopf can list anything).
    """
    controller = controller or Controller(settings)
    admission: Admission | None = None
    admission_client: KubeClient | None = None
    if settings.webhook.enabled:
        admission_client = connect()
        admission = Admission(settings, admission_client)
    registry, operator_kopf_settings = build_registry(settings, controller)
    namespaces = list(settings.watch_namespaces)
    extra: dict[str, Any] = {}
    if liveness:
        extra["liveness_endpoint"] = liveness_endpoint(settings)
    try:
        if settings.upgrade_crds:
            # Before the webhook server injects its CA into the CRDs and migrates stored
            # versions, and before kopf lists anything (an upgraded schema applies at once).
            crd_client = admission_client or connect()
            try:
                await install_crds(settings, crd_client)
            finally:
                if crd_client is not admission_client:
                    await crd_client.close()
        if admission is not None:
            await admission.start()
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
        try:
            await controller.stop()  # idempotent; also covers a crash before kopf's cleanup
        finally:
            if admission is not None:
                await admission.stop()
            if admission_client is not None:
                await admission_client.close()
