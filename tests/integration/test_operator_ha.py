"""Two `dgd operator` processes with leader election behind a fail-closed webhook: SIGKILL the
leader while graphs are being created; the standby takes over, every graph converges, and not
one write is refused.

The replicas share one webhook port with SO_REUSEPORT and one certificate, the local stand-in
for a Service in front of two pods: the kernel hands each new connection to a live listener,
as kube-proxy only routes to live endpoints. The test registers the webhook configurations
itself (URL client config, this module's label selector) and deletes them at the end even if
the operators could not.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures.catalog import load_graph
from tests.helpers import wait_for
from tests.integration.operator_harness import dgd_path, settled

from dgd_operator.admission.certificates import write_self_signed
from dgd_operator.admission.service import configurations, url_client_config
from dgd_operator.api.constants import ANNOTATION_ORIGIN_VERSION
from dgd_operator.dev.controlplane import ControlPlane
from dgd_operator.dev.operator_process import OperatorProcess, start_operator
from dgd_operator.dev.rest import ApiError
from dgd_operator.settings import LeaderElectionSettings, OperatorSettings, WebhookSettings

pytestmark = pytest.mark.integration

LABEL = "dgd.dev/ha-test"
VWC_API = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
MWC_API = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/dgd-operator"
GRAPHS = 30
KILL_AFTER = 8
# Short terms keep the test quick; the chart keeps client-go's 15/10/2 s.
ELECTION = {"lease_duration": 4.0, "renew_deadline": 3.0, "retry_period": 0.5}


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _graph(name: str, token: str) -> dict[str, Any]:
    doc = load_graph("trtllm-agg")
    doc["metadata"] = {"name": name, "labels": {LABEL: token}}
    return doc


def _holder(rest: Any, namespace: str) -> str | None:
    try:
        spec = rest.get(LEASE.format(ns=namespace)).get("spec") or {}
    except ApiError:
        return None
    return spec.get("holderIdentity") or None


@contextlib.contextmanager
def _webhook_registered(
    rest: Any, token: str, port: int, ca: bytes, namespace: str
) -> Iterator[None]:
    name = f"{token}.ha-test.dgd.dev"
    selector = {"matchExpressions": [{"key": LABEL, "operator": "In", "values": [token]}]}
    docs = configurations(
        name,
        url_client_config(f"https://127.0.0.1:{port}", base64.b64encode(ca).decode()),
        failure_policy="Fail",
        timeout_seconds=10,
        object_selector=selector,
    )
    try:
        for doc, api in zip(docs, (VWC_API, MWC_API), strict=True):
            rest.post(api, doc)
        # In force once the API server calls us: a dry-run create gets our default annotation.
        probe = _graph("probe", token)
        wait_for(
            lambda: (
                ANNOTATION_ORIGIN_VERSION
                in (
                    rest.post(dgd_path(namespace), probe, dryRun="All")["metadata"].get(
                        "annotations"
                    )
                    or {}
                )
            ),
            timeout=60,
            interval=0.3,
            description="the API server to call the replicas' webhook",
        )
        yield
    finally:
        for api in (VWC_API, MWC_API):
            with contextlib.suppress(ApiError):
                rest.delete(f"{api}/{name}")
            assert not rest.exists(f"{api}/{name}")


def test_leader_sigkill_while_graphs_are_created(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    rest = control_plane.rest
    token = uuid.uuid4().hex[:10]
    port = _free_port()
    certificate = write_self_signed(tmp_path / "certs", ["127.0.0.1"])
    operators: dict[str, OperatorProcess] = {}

    def settings(identity: str) -> OperatorSettings:
        return OperatorSettings(
            watch_namespaces=(namespace,),
            workers=2,
            leader_election=LeaderElectionSettings(enabled=True, identity=identity, **ELECTION),
            webhook=WebhookSettings(
                enabled=True,
                port=port,
                cert_dir=str(certificate.directory),
                managed=False,
                reuse_port=True,
            ),
        )

    try:
        for identity in ("replica-a", "replica-b"):
            operators[identity] = start_operator(
                control_plane.kubeconfig,
                settings(identity),
                run_dir=tmp_path / "run",
                log_dir=tmp_path / "logs",
                name=identity,
            )
        leader = wait_for(lambda: _holder(rest, namespace), timeout=60, description="a leader")
        [standby] = [identity for identity in operators if identity != leader]
        with _webhook_registered(rest, token, port, certificate.ca.read_bytes(), namespace):
            refused: list[str] = []
            created: list[str] = []
            killed_at: list[float] = []

            def create_graphs() -> None:
                for index in range(GRAPHS):
                    name = f"ha-{index:02d}"
                    try:
                        rest.post(dgd_path(namespace), _graph(name, token))
                        created.append(name)
                    except ApiError as exc:
                        refused.append(f"{name}: {exc}")
                    if index + 1 == KILL_AFTER:
                        os.kill(operators[leader].proc.pid, signal.SIGKILL)
                        killed_at.append(time.monotonic())
                    time.sleep(0.2)

            writer = threading.Thread(target=create_graphs, name="graph-writer")
            writer.start()
            wait_for(lambda: killed_at, timeout=120, description="the leader to be killed")
            taken = wait_for(
                lambda: _holder(rest, namespace) == standby and time.monotonic(),
                timeout=60,
                interval=0.05,
                description=f"{standby} to take the lease",
            )
            writer.join(120)
            assert not writer.is_alive()
            takeover = taken - killed_at[0]
            for name in created:
                wait_for(
                    lambda name=name: settled(rest, namespace, name),
                    timeout=240,
                    description=f"{name} successful under the new leader",
                )
            converged = time.monotonic() - killed_at[0]
            print(  # the failover time, for the report (pytest -s)
                f"\nHA: lease taken {takeover:.2f}s after SIGKILL "
                f"(lease {ELECTION['lease_duration']:g}s); all {GRAPHS} graphs converged "
                f"{converged:.1f}s after it; refused writes: {len(refused)}"
            )
            assert refused == []
            assert len(created) == GRAPHS
            # Every create really went through the replicas' webhooks (fail-closed, not skipped).
            items = rest.get(dgd_path(namespace), labelSelector=f"{LABEL}={token}")["items"]
            assert len(items) == GRAPHS
            assert all(
                ANNOTATION_ORIGIN_VERSION in (i["metadata"].get("annotations") or {}) for i in items
            )
            assert not operators[leader].proc.alive()
            assert operators[standby].proc.alive()
            # The new leader's /metrics: it leads, and its webhook counted what it answered.
            exposition = _http_get(operators[standby].metrics_url)
            assert "\ndgd_operator_leader 1.0\n" in exposition
            answered = (
                'dgd_operator_webhook_requests_total{allowed="true",operation="CREATE",'
                'webhook="validate-dgd"}'
            )
            assert answered in exposition
    finally:
        for operator in operators.values():
            operator.stop()
