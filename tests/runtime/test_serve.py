"""`dgd serve` runs a real DGD locally, answers a chat completion, and leaves no process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dgd_operator.commands.serve import ServePlanError, plan_from_dgd
from dgd_runtime.local.nats_server import free_port
from dgd_runtime.local.plan import LocalComponent, LocalPlan

pytestmark = pytest.mark.runtime

EXAMPLES = Path("/work/shared/reference/dgd-examples")
AGG = EXAMPLES / "examples__backends__vllm__deploy__agg.yaml"
HANG_GUARD = 90.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purpose.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not AGG.exists(), reason="reference DGD examples not present")
def test_serve_agg_example_answers_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "DGD_CACHE": str(tmp_path / "cache"), "TMPDIR": str(tmp_path)}
    stderr_path = tmp_path / "serve.stderr"
    lines: list[str] = []
    pids: list[int] = []
    with (
        open(stderr_path, "w") as stderr,
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dgd_operator",
                "serve",
                str(AGG),
                "--port",
                str(port),
                "--speedup-ratio",
                "100",
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            text=True,
        ) as proc,
    ):
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + HANG_GUARD
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
                if line.startswith("pids:"):
                    pids = [int(p) for p in line.split(":", 1)[1].split("logs:")[0].split()]
                if line.startswith("curl "):
                    break
            assert any(line.startswith("curl ") for line in lines), (
                "".join(lines) + stderr_path.read_text()
            )
            assert len(pids) == 3  # nats-server, one worker (replicas: 1), frontend
            url = f"http://127.0.0.1:{port}"
            assert f"{url}/v1/chat/completions" in lines[-1]
            resp = httpx.post(
                f"{url}/v1/chat/completions",
                timeout=30,
                json={
                    "model": "Qwen/Qwen3-0.6B",
                    "messages": [{"role": "user", "content": "Hello!"}],
                    "max_tokens": 8,
                    "ignore_eos": True,
                },
            )
            assert resp.status_code == 200, resp.text
            assert resp.json()["usage"]["completion_tokens"] == 8
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    assert proc.returncode == 0, stderr_path.read_text()
    assert [p for p in pids if _alive(p)] == []


def test_plan_counts_worker_replicas_and_model_name() -> None:
    doc = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": "disagg"},
        "spec": {
            "services": {
                "Frontend": {"componentType": "frontend", "replicas": 1},
                "prefill": {
                    "componentType": "worker",
                    "subComponentType": "prefill",
                    "replicas": 2,
                    "extraPodSpec": {"mainContainer": {"args": ["--model", "m/x"]}},
                },
                "decode": {
                    "componentType": "worker",
                    "subComponentType": "decode",
                    "replicas": 3,
                    "extraPodSpec": {
                        "mainContainer": {
                            "command": ["/bin/sh", "-c"],
                            "args": ["python3 -m dynamo.vllm --model m/x --is-decode-worker"],
                        }
                    },
                },
            }
        },
    }
    plan = plan_from_dgd(doc)
    assert plan == LocalPlan(
        name="disagg",
        namespace="disagg",
        components=(
            LocalComponent("prefill", "prefill", 2),
            LocalComponent("decode", "decode", 3),
        ),
        model_name="m/x",
    )
    assert plan.worker_count == 5


def test_plan_rejects_graph_without_workers() -> None:
    doc = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": "fe-only"},
        "spec": {"services": {"Frontend": {"componentType": "frontend"}}},
    }
    with pytest.raises(ServePlanError, match="no worker services"):
        plan_from_dgd(doc)


def test_serve_rejects_invalid_dgd(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: nvidia.com/v1alpha1\nkind: DynamoGraphDeployment\n"
        "metadata: {name: x}\nspec:\n  services:\n    w:\n      replicas: two\n"
    )
    res = subprocess.run(
        [sys.executable, "-m", "dgd_operator", "serve", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert "spec.services.w.replicas" in res.stderr


def test_plan_reads_role_from_engine_arguments() -> None:
    def svc(args: list[str]) -> dict[str, object]:
        return {"componentType": "worker", "extraPodSpec": {"mainContainer": {"args": args}}}

    doc = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": "roles"},
        "spec": {
            "services": {
                "p": svc(["--model", "m", "--disaggregation-mode", "prefill"]),
                "v": svc(["--model", "m", "--is-prefill-worker"]),
                "d": svc(["--model", "m", "--disaggregation-mode=decode"]),
                "w": svc(["--model", "m"]),
            }
        },
    }
    roles = {c.name: c.role for c in plan_from_dgd(doc).components}
    assert roles == {"p": "prefill", "v": "prefill", "d": "decode", "w": "worker"}


def test_plan_carries_literal_env_with_service_values_winning() -> None:
    doc = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": "env"},
        "spec": {
            "envs": [{"name": "A", "value": "graph"}, {"name": "B", "value": "graph"}],
            "services": {
                "w": {
                    "componentType": "worker",
                    "envs": [
                        {"name": "B", "value": "service"},
                        {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                    ],
                },
                "none": {"componentType": "worker", "replicas": 0},
            },
        },
    }
    plan = plan_from_dgd(doc)
    assert plan.components == (LocalComponent("w", "worker", 1, {"A": "graph", "B": "service"}),)
