"""`make demo` end to end: `python -m dgd_operator.dev.demo` (and `dgd demo`) starts its own
control plane and operator, gets the default graph Ready, reports it, and leaves no process
behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dgd_operator.dev import binaries

pytestmark = pytest.mark.integration

DEMO_TIMEOUT = 300  # generous: the 2 shared cores may be busy; the demo itself takes seconds


def _processes_mentioning(text: str) -> list[str]:
    """Live processes whose command line or environment mentions ``text`` (our state dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z" and (text.encode() in cmdline or text.encode() in environ):
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name}: {command[:120]}")
    return found


def test_demo_runs_default_graph_and_cleans_up(
    kube_binaries: binaries.KubeBinaries, tmp_path: Path, repo_root: Path
) -> None:
    state = tmp_path / "demo-state"
    env = dict(os.environ)
    # Never reuse (or touch) a developer's `dgd dev` cluster: point its state somewhere empty.
    env["DGD_DEV_STATE"] = str(tmp_path / "no-dev-cluster")
    env["PYTHONUNBUFFERED"] = "1"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dgd_operator.dev.demo",
            "--state-dir",
            str(state),
            "--timeout",
            "180",
        ],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr
    leftovers = _processes_mentioning(str(state))
    assert result.returncode == 0, output
    assert "a new local control plane" in output
    assert "vllm-disagg is Ready" in output
    assert "services ready 3/3" in output
    # `kubectl get dgd`-like line and the per-service table.
    assert any(
        line.split()[:4] == ["vllm-disagg", "True", "vllm", "successful"]
        for line in output.splitlines()
    )
    for name in (
        "vllm-disagg-frontend",
        "vllm-disagg-vllmdecodeworker",
        "vllm-disagg-vllmprefillworker",
    ):
        assert f"Deployment      {name}" in output, output
    # Pods landed on simulated GPU nodes, one GPU per worker.
    assert "(3 pods, 2 GPUs)" in output, output
    assert "gpu-node-" in output
    assert "Same 9 objects as `dgd render recipes/vllm-disagg.yaml -n dgd-demo`" in output, output
    # The graph really serves: a streamed answer, then a decode worker pod replaced.
    assert any(line.startswith("TTFT ") for line in output.splitlines()), output
    assert "meanwhile: a request was served" in output, output
    assert "the Deployment replaced it:" in output, output
    assert "Cleaned up: stopped the operator and the control plane" in output
    assert not leftovers, f"processes left running: {leftovers}"
    assert not state.exists(), "the demo's state directory was not removed"


def test_demo_rejects_an_invalid_graph_naming_the_field(tmp_path: Path, repo_root: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: nvidia.com/v1alpha1\nkind: DynamoGraphDeployment\nmetadata:\n  name: bad\n"
        "spec:\n  services:\n    Frontend:\n      componentType: frontend\n      replicas: -1\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dgd_operator",
            "demo",
            "--dgd",
            str(bad),
            "--state-dir",
            str(tmp_path / "s"),
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "spec.services.Frontend.replicas" in result.stdout, result.stdout
    assert not (tmp_path / "s").exists(), "nothing should start for an invalid graph"


def test_demo_outside_a_checkout_asks_for_a_graph(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dgd_operator", "demo", "--state-dir", str(tmp_path / "s")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "recipes/vllm-disagg.yaml does not exist" in result.stdout, result.stdout
    assert "pass --dgd FILE" in result.stdout
    assert not (tmp_path / "s").exists()


def test_demo_times_out_with_the_reason_and_cleans_up(
    kube_binaries: binaries.KubeBinaries, tmp_path: Path, repo_root: Path
) -> None:
    # 16 GPUs per replica: the demo's simulated nodes have 8, so the pod stays unschedulable.
    greedy = tmp_path / "greedy.yaml"
    greedy.write_text(
        "apiVersion: nvidia.com/v1alpha1\nkind: DynamoGraphDeployment\nmetadata:\n  name: greedy\n"
        "spec:\n  backendFramework: vllm\n  services:\n    Worker:\n      componentType: worker\n"
        '      replicas: 1\n      resources:\n        limits:\n          gpu: "16"\n'
        "      extraPodSpec:\n        mainContainer:\n          image: example/worker:1\n"
    )
    state = tmp_path / "demo-state"
    env = dict(os.environ, DGD_DEV_STATE=str(tmp_path / "no-dev-cluster"), PYTHONUNBUFFERED="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dgd_operator.dev.demo",
            "--dgd",
            str(greedy),
            "--state-dir",
            str(state),
            "--timeout",
            "8",
        ],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "greedy did not become Ready within 8s" in output, output
    assert "greedy-worker" in output  # the last status names the workload that is not ready
    assert "operator log" in output
    assert "Cleaned up" in output
    assert not _processes_mentioning(str(state))
