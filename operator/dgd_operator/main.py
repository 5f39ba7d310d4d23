"""Run the operator: kopf's reactor with our registry, settings and controller, and the webhooks.

This is where the pieces meet: the API client (`controllerkit.kube`, made only here), the
controller (`reconcile`), the watch handlers (`handlers`), the webhook server (`admission`),
which runs beside kopf so that conversion never waits for it, leader election
(`controllerkit.leaderelection`) and the health endpoints.

With leader election every replica serves the webhooks and `/healthz`, but only the holder
of the Lease runs kopf (its watches, indexes and the reconciler): a standby costs the API
server nothing. A leader that loses the Lease stops kopf and exits non-zero, so the kubelet
restarts it as a clean standby (client-go controllers do the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import kopf
from aiohttp import web

from dgd_operator import metrics
from dgd_operator.admission import Admission
from dgd_operator.admission.crd_upgrade import packaged_crds, upgrade_crds
from dgd_operator.admission.webhooks import CONVERT_PATH
from dgd_operator.api.constants import MANAGED_BY
from dgd_operator.controllerkit.kube import Credentials, KubeClient
from dgd_operator.controllerkit.kubeapi import ApiError
from dgd_operator.controllerkit.leaderelection import (
    LeaderElector,
    LeadershipLostError,
    default_identity,
)
from dgd_operator.handlers import kopf_settings, register
from dgd_operator.reconcile.controller import Controller
from dgd_operator.reconcile.resources import KINDS
from dgd_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

# kopf accepts either as a stop or ready flag; the test harness passes threading.Events.
Flag = asyncio.Event | threading.Event


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
        log.warning("CRDs not upgraded (DGD_UPGRADE_CRDS): %s", exc)


class Health:
    """What `/healthz` and `/readyz` report: the webhook server, the Lease, kopf's startup."""

    def __init__(self, admission: Admission | None, election: bool) -> None:
        self.admission = admission
        self.election = election
        self.leader = not election
        self.reconciling = False
        self.identity = ""

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """(ready, details). Ready when the webhook server (if on) listens with its certificate
        loaded, and this replica either waits as a standby or has kopf started (its startup
        handlers done: API client connected, work queue running, watches starting)."""
        webhook = self.admission is not None and self.admission.server is not None
        webhook_ready = webhook and self.admission.server.ready  # type: ignore[union-attr]
        checks = {
            "webhook": "off" if self.admission is None else ("ok" if webhook_ready else "starting"),
            "role": "leader" if self.leader else "standby",
            "reconciler": "ok"
            if self.reconciling
            else ("standby" if not self.leader else "starting"),
        }
        ready = (self.admission is None or webhook_ready) and (
            self.reconciling or (self.election and not self.leader)
        )
        return ready, {"ready": ready, "identity": self.identity, **checks}


class HealthServer:
    """`GET /healthz` (the event loop answers) and `GET /readyz` (`Health.ready`) over HTTP."""

    def __init__(self, health: Health, host: str, port: int) -> None:
        self.health = health
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def _healthz(self, _: web.Request) -> web.Response:
        details = self.health.ready()[1]
        return web.json_response({"ok": True, **details})

    async def _readyz(self, _: web.Request) -> web.Response:
        ready, details = self.health.ready()
        return web.json_response(details, status=200 if ready else 503)

    async def start(self) -> None:
        """Start listening."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        """Stop listening (idempotent)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


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


async def _wait_flag(flag: Flag) -> None:
    if isinstance(flag, asyncio.Event):
        await flag.wait()
        return
    while not flag.is_set():  # a threading.Event cannot be awaited
        await asyncio.sleep(0.05)


def _on_signals(stop: asyncio.Event) -> Callable[[], None]:
    """Set `stop` on SIGTERM/SIGINT while kopf is not running (it installs its own); returns
    the undo. Only the main thread may install signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def undo() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    return undo


def elector_for(settings: OperatorSettings, client: KubeClient) -> LeaderElector:
    """This replica's side of the election configured by `settings.leader_election`."""
    election = settings.leader_election
    return LeaderElector(
        client,
        namespace=settings.lease_namespace,
        name=election.lease_name,
        identity=election.identity or default_identity(),
        lease_duration=election.lease_duration,
        renew_deadline=election.renew_deadline,
        retry_period=election.retry_period,
        labels={"app.kubernetes.io/managed-by": MANAGED_BY},
    )


async def run_operator(
    settings: OperatorSettings,
    *,
    controller: Controller | None = None,
    stop_flag: Flag | None = None,
    ready_flag: Flag | None = None,
    liveness: bool = True,
) -> None:
    """Run until `stop_flag` is set (or the process is signalled), in the current event loop.

    Namespaces come from `settings.watch_namespaces` (empty: the whole cluster). The webhook
    server starts first (the API server may need conversion before kopf can list anything)
    and serves on every replica. With `settings.leader_election.enabled` kopf runs only while
    this replica holds the Lease; losing it raises `LeadershipLostError` after kopf stopped.
    `liveness` serves `/healthz` and `/readyz` on `settings.health_port`.
    """
    controller = controller or Controller(settings)
    admission: Admission | None = None
    client: KubeClient | None = None
    if settings.webhook.enabled or settings.leader_election.enabled or settings.upgrade_crds:
        client = connect()
    if settings.webhook.enabled:
        admission = Admission(settings, client)
    election = settings.leader_election.enabled
    health = Health(admission, election)
    server = (
        HealthServer(health, settings.bind_address, settings.health_port)
        if liveness and settings.health_port
        else None
    )
    registry, operator_kopf_settings = build_registry(settings, controller)
    namespaces = list(settings.watch_namespaces)
    stop = asyncio.Event()
    undo_signals = _on_signals(stop)
    relay = asyncio.create_task(_wait_flag(stop_flag)) if stop_flag is not None else None
    if relay is not None:
        relay.add_done_callback(lambda _: stop.set())
    elector: LeaderElector | None = None
    holding: asyncio.Task[None] | None = None
    try:
        if server is not None:
            await server.start()
        if settings.upgrade_crds:
            # Before the webhook server injects its CA into the CRDs and migrates stored
            # versions, and before kopf lists anything (an upgraded schema applies at once).
            # Every replica does it (idempotent): a standby may be the first one up.
            assert client is not None
            await install_crds(settings, client)
        if admission is not None:
            await admission.start()
        if election:
            assert client is not None
            elector = elector_for(settings, client)
            health.identity = elector.identity
            if not await _first_of(elector.acquire(), stop):
                return
            undo_signals()
            health.leader = True
            metrics.LEADER.set(1)
            metrics.LEADER_TRANSITIONS.inc()
            holding = asyncio.create_task(elector.hold(), name="leader-election-renew")
            holding.add_done_callback(lambda _: stop.set())

        def started() -> None:
            health.reconciling = True
            if ready_flag is not None:
                ready_flag.set()

        reconciling = asyncio.Event()
        watcher = asyncio.create_task(_on_set(reconciling, started))
        try:
            await kopf.operator(
                registry=registry,
                settings=operator_kopf_settings,
                standalone=True,
                clusterwide=not namespaces,
                namespaces=namespaces,
                stop_flag=stop,
                ready_flag=reconciling,
            )
        finally:
            watcher.cancel()
        if holding is not None and holding.done() and not holding.cancelled():
            holding.result()  # raises LeadershipLostError
    finally:
        health.reconciling = False
        undo_signals()
        try:
            await controller.stop()  # idempotent; also covers a crash before kopf's cleanup
        finally:
            for task in (holding, relay):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, LeadershipLostError):
                        await task
            metrics.LEADER.set(0)
            if elector is not None:
                await elector.release()
            if ready_flag is not None:
                ready_flag.set()  # nobody waits forever for a replica that never led
            if admission is not None:
                await admission.stop()
            if server is not None:
                await server.stop()
            if client is not None:
                await client.close()


async def _first_of(work: Any, stop: asyncio.Event) -> bool:
    """Run the coroutine `work` until it returns (True) or `stop` is set first (False)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stopped):
        if pending not in done:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
    if task in done:
        task.result()
        return True
    return False


async def _on_set(flag: asyncio.Event, then: Callable[[], None]) -> None:
    await flag.wait()
    then()
