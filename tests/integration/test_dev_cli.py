"""`dgd dev up|status|kubeconfig|down` end to end, in a separate state directory with its own
ports (independent of the session's control_plane fixture)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dgd_operator.dev import binaries, processes

pytestmark = pytest.mark.integration


def _dgd(state: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DGD_DEV_STATE=str(state))
    return subprocess.run(
        [sys.executable, "-m", "dgd_operator", "dev", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture()
def dev_state(tmp_path: Path, kube_binaries: binaries.KubeBinaries) -> Iterator[Path]:
    """A private state dir; whatever happens, `dgd dev down` runs afterwards."""
    state = tmp_path / "dev-state"
    try:
        yield state
    finally:
        if state.exists():
            _dgd(state, "down", timeout=60)


def test_dev_up_kubectl_status_down_leaves_nothing_running(dev_state: Path) -> None:
    up = _dgd(dev_state, "up", "--nodes", "2", "--gpus-per-node", "4")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "kubectl --kubeconfig" in up.stdout
    info = json.loads((dev_state / "cluster.json").read_text())
    pids = info["pids"]
    assert set(pids) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "fake-kubelet",
        "dgd-webhook",  # converts nvidia.com/v1alpha1 <-> v1beta1 for the CRDs
        "nats-server",  # for executed pods (on by default)
    }

    path = _dgd(dev_state, "kubeconfig")
    assert path.returncode == 0
    kubeconfig = path.stdout.strip()
    assert kubeconfig == str(dev_state / "kubeconfig")  # the path and nothing else

    again = _dgd(dev_state, "up")
    assert again.returncode == 0
    assert "already running" in again.stdout
    assert json.loads((dev_state / "cluster.json").read_text())["pids"] == pids

    status = _dgd(dev_state, "status")
    assert status.returncode == 0, status.stdout
    assert "running" in status.stdout

    kubectl = shutil.which("kubectl")
    if kubectl:
        nodes = subprocess.run(
            [kubectl, "--kubeconfig", kubeconfig, "get", "nodes", "-o", "name"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert nodes.returncode == 0, nodes.stderr
        assert nodes.stdout.split() == ["node/gpu-node-0", "node/gpu-node-1"]

    procs = [processes.load(name, dev_state / "run", dev_state / "logs") for name in pids]
    assert all(p is not None and p.alive() for p in procs)

    down = _dgd(dev_state, "down", timeout=60)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not dev_state.exists()
    still_running = [p.name for p in procs if p is not None and p.alive()]
    assert still_running == []

    after = _dgd(dev_state, "status")
    assert after.returncode == 3
    assert "dgd dev up" in after.stdout
