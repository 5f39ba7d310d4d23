"""`dgd operator` as a real process: health and metrics endpoints, reconciling, clean SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest
from tests.fixtures.catalog import load_graph
from tests.helpers import wait_for
from tests.integration.operator_harness import dgd_path, settled

from dgd_operator.dev.controlplane import ControlPlane

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:
        return str(response.read().decode())


def test_dgd_operator_command(control_plane: ControlPlane, namespace: str) -> None:
    metrics_port, health_port = _free_port(), _free_port()
    env = dict(
        os.environ,
        KUBECONFIG=str(control_plane.kubeconfig),
        DGD_BIND_ADDRESS="127.0.0.1",
        DGD_METRICS_PORT=str(metrics_port),
        DGD_HEALTH_PORT=str(health_port),
        DGD_LOG_FORMAT="json",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "dgd_operator", "operator", "--namespace", namespace],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(
            lambda: _http_get(f"http://127.0.0.1:{health_port}/healthz"),
            timeout=30,
            description="liveness endpoint",
        )
        doc = load_graph("trtllm-agg")
        control_plane.rest.post(dgd_path(namespace), doc)
        wait_for(
            lambda: settled(control_plane.rest, namespace, doc["metadata"]["name"]),
            timeout=60,
            description="DGD successful",
        )
        name = doc["metadata"]["name"]
        ready_line = (
            f'dgd_operator_graph_ready{{name="{name}",namespace="{namespace}",'
            'state="successful"} 1.0'
        )
        # The graph gauges are read from the operator's watch cache at scrape time, which sees
        # the status it wrote a moment after the API server does.
        wait_for(
            lambda: ready_line in _http_get(f"http://127.0.0.1:{metrics_port}/metrics"),
            timeout=30,
            description="the graph's readiness in the operator's metrics",
        )
        exposition = _http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        # Missing children are created with a POST (issue 16).
        assert 'dgd_operator_api_requests_total{resource="deployments",verb="create"}' in exposition
        assert "dgd_operator_reconcile_duration_seconds_count" in exposition
        # The observability pack, from the live process: per-graph readiness (the graph's own
        # namespace label), reconcile results, build info, process metrics, no _created twins.
        assert ready_line in exposition
        assert (
            f'dgd_operator_graphs{{namespace="{namespace}",state="successful"}} 1.0' in exposition
        )
        assert 'dgd_operator_reconciles_total{result="success"}' in exposition
        assert "dgd_operator_build_info{" in exposition
        assert "process_resident_memory_bytes " in exposition
        assert "_created" not in exposition
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            pytest.fail(f"dgd operator ignored SIGTERM:\n{output}")
    assert process.returncode == 0, output
    assert '"level": "info", "logger": "dgd_operator"' in output
    # The /healthz calls above are access-log lines: DEBUG only, so absent at INFO.
    assert '"logger": "aiohttp.access"' not in output
