"""Graphs that really serve on the local cluster: the fake kubelet runs the pods' commands as
local processes (nodes added with ``execute=True``), the operator builds the graph with a real
nats-server address, and OpenAI requests go through the frontend Service's endpoint to workers
running our runtime with the mock engine. Recipes keep NVIDIA's commands (``python3 -m
dynamo.vllm``), mapped by ``dgd_operator.dev.pod_commands``.

Each test gets private executing nodes (``pool_nodes``); its graph is pinned to them with a
nodeSelector and toleration. Teardown checks that no pod process is left.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.helpers import wait_for
from tests.integration.node_pools import POOL_KEY, AddNodes
from tests.integration.operator_harness import running_operator
from tests.runtime.test_serve_supervision import ServeProcess

from dgd_operator.dev import access
from dgd_operator.dev.controlplane import ControlPlane
from dgd_operator.dev.rest import ApiError, JsonDict
from dgd_runtime.local.nats_server import NatsServer, NatsServerUnavailableError, free_port

pytestmark = pytest.mark.integration

DGD_PATH = "/apis/nvidia.com/v1alpha1/namespaces/{ns}/dynamographdeployments"
READY_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def nats_url() -> Iterator[str]:
    """A nats-server for this module's graphs (the operator injects it as NATS_SERVER)."""
    try:
        server = NatsServer()
    except NatsServerUnavailableError as exc:
        pytest.skip(str(exc))
    with server:
        yield server.url


@pytest.fixture()
def executing(
    control_plane: ControlPlane, namespace: str, pool_nodes: AddNodes
) -> Iterator[ControlPlane]:
    """One executing node private to this test; afterwards every pod process must be gone."""
    kubelet = control_plane.kubelet
    assert kubelet is not None
    pool_nodes(1, execute=True)
    yield control_plane
    rest = control_plane.rest
    # The workloads first, so no replacement pod starts while the pods go away.
    for plural in ("deployments", "statefulsets"):
        rest.request("DELETE", f"/apis/apps/v1/namespaces/{namespace}/{plural}")
    wait_for(
        lambda: not rest.get(f"/apis/apps/v1/namespaces/{namespace}/replicasets")["items"],
        timeout=60,
        description="the ReplicaSets to be collected",
    )
    rest.request("DELETE", f"/api/v1/namespaces/{namespace}/pods", params={"gracePeriodSeconds": 0})
    wait_for(
        lambda: not _alive_pids(list((control_plane.state_dir / "pods").glob(f"{namespace}_*"))),
        timeout=60,
        description=f"the pod processes of {namespace} to exit",
    )


def _alive_pids(pod_dirs: list[Path]) -> list[int]:
    alive = []
    for pid_file in (p for d in pod_dirs for p in d.glob("*.pid")):
        pid, start = (int(x) for x in pid_file.read_text().split())
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[19]) == start:
            alive.append(pid)
    return alive


def _pinned(doc: JsonDict, namespace: str) -> JsonDict:
    """``doc`` with every service's pods pinned to the test's pool nodes."""
    graph = copy.deepcopy(doc)
    graph["metadata"]["namespace"] = namespace
    for service in graph["spec"]["services"].values():
        pod = service.setdefault("extraPodSpec", {})
        pod["nodeSelector"] = {POOL_KEY: namespace}
        pod["tolerations"] = [
            {"key": POOL_KEY, "operator": "Equal", "value": namespace, "effect": "NoSchedule"}
        ]
    return graph


def _recipe(repo_root: Path, name: str, namespace: str) -> JsonDict:
    doc = yaml.safe_load((repo_root / name).read_text())
    return _pinned(doc, namespace)


def _ready(control_plane: ControlPlane, namespace: str, name: str) -> JsonDict | None:
    dgd = control_plane.rest.get(DGD_PATH.format(ns=namespace) + f"/{name}")
    for cond in dgd.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return dgd
    return None


def _pods(control_plane: ControlPlane, namespace: str, component: str) -> list[JsonDict]:
    pods = control_plane.rest.get(
        f"/api/v1/namespaces/{namespace}/pods",
    ).get("items", [])
    return [
        p
        for p in pods
        if (p["metadata"].get("labels") or {}).get("nvidia.com/dynamo-component") == component
        and not p["metadata"].get("deletionTimestamp")
    ]


def _chat(url: str, model: str, max_tokens: int = 16) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": max_tokens,
        },
        timeout=30,
    )
    response.raise_for_status()
    return dict(response.json())


def _deploy(control_plane: ControlPlane, graph: JsonDict) -> str:
    namespace = graph["metadata"]["namespace"]
    control_plane.rest.post(DGD_PATH.format(ns=namespace), graph)
    return str(graph["metadata"]["name"])


def test_aggregated_recipe_serves_and_survives_a_worker_kill(
    executing: ControlPlane, namespace: str, nats_url: str, repo_root: Path
) -> None:
    """recipes/vllm-agg.yaml answers through the operator-built graph; a worker killed
    mid-stream ends that stream with an error event; the replacement serves later requests."""
    plane = executing
    graph = _recipe(repo_root, "recipes/vllm-agg.yaml", namespace)
    model = graph["spec"]["services"]["worker"]["extraPodSpec"]["mainContainer"]["args"][1]
    with running_operator(namespace, nats_address=nats_url):
        name = _deploy(plane, graph)
        wait_for(lambda: _ready(plane, namespace, name), READY_TIMEOUT, 0.5, "the DGD Ready")
        worker = _pods(plane, namespace, "worker")[0]
        assert worker["status"]["podIP"].startswith("10.244.")
        env_names = {e["name"] for e in worker["spec"]["containers"][0]["env"]}
        assert "NATS_SERVER" in env_names  # injected by the operator, used by the process
        # Where `dgd dev port-forward svc/<name>-frontend 8000` connects: a ready endpoint of
        # the Service (its pod IP moved to the pod's loopback address).
        host, port = wait_for(
            lambda: access.resolve_target(plane.rest, namespace, f"svc/{name}-frontend", 8000),
            30,
            0.5,
            "a ready frontend endpoint",
        )
        assert host.startswith("127.244.")
        url = f"http://{host}:{port}"
        answer = _chat(url, model)
        assert answer["choices"][0]["message"]["content"]
        assert answer["usage"]["completion_tokens"] > 0
        worker_log = access.pod_log_path(plane.state_dir, worker, None).read_text()
        assert f"serving model '{model}'" in worker_log  # what `dgd dev logs POD` prints
        # `kubectl logs`: the API server fetches the log from the kubelet's /containerLogs.
        log_path = f"/api/v1/namespaces/{namespace}/pods/{worker['metadata']['name']}/log"
        through_api = plane.rest.get(log_path, container="main")["raw"]
        assert f"serving model '{model}'" in through_api
        last = plane.rest.get(log_path, container="main", tailLines=1)["raw"]
        log_file = access.pod_log_path(plane.state_dir, worker, None)
        assert last.count("\n") == 1
        assert last in log_file.read_text().splitlines(keepends=True)

        _kill_mid_stream(plane, namespace, url, model, worker)
        wait_for(
            lambda: _replacement_ready(plane, namespace, "worker", worker),
            READY_TIMEOUT,
            0.5,
            "a Ready replacement worker",
        )
        later = wait_for(lambda: _chat(url, model), 30, 0.5, "a request to succeed again")
        assert later["usage"]["completion_tokens"] > 0


def _kill_mid_stream(
    plane: ControlPlane, namespace: str, url: str, model: str, worker: JsonDict
) -> None:
    """Start a long stream, delete ``worker`` without grace after 3 events (its processes are
    killed): the stream must end with an error event, not [DONE] and not a dropped connection."""
    events: list[str] = []
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": "tell me a long story"}],
            "max_tokens": 4000,
            "stream": True,
            "ignore_eos": True,
        },
        timeout=60,
    ) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data: "):
                continue
            events.append(line[len("data: ") :])
            if len(events) == 3:
                plane.rest.delete(
                    f"/api/v1/namespaces/{namespace}/pods/{worker['metadata']['name']}",
                    {"gracePeriodSeconds": 0},
                )
    assert events[-1] != "[DONE]", "the stream finished although its worker was killed"
    assert "error" in json.loads(events[-1]), events[-1]


def _replacement_ready(
    plane: ControlPlane, namespace: str, component: str, old: JsonDict
) -> JsonDict | None:
    """A Ready pod of ``component`` other than ``old``."""
    for pod in _pods(plane, namespace, component):
        if pod["metadata"]["uid"] != old["metadata"]["uid"] and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod.get("status", {}).get("conditions", [])
        ):
            return pod
    return None


def test_crash_looping_container_reports_back_off_and_exit(
    executing: ControlPlane, namespace: str, nats_url: str, repo_root: Path
) -> None:
    """A known command that exits at once: CrashLoopBackOff, restartCount grows, the last exit
    code and reason are in the pod status, and the DGD is not Ready."""
    plane = executing
    graph = _recipe(repo_root, "recipes/vllm-agg.yaml", namespace)
    main = graph["spec"]["services"]["worker"]["extraPodSpec"]["mainContainer"]
    main["command"] = ["python3", "-m", "dgd_runtime.worker"]
    main["args"] = ["--engine", "no-such-engine", "--model-path", "/nonexistent"]
    main["terminationMessagePolicy"] = "FallbackToLogsOnError"
    with running_operator(namespace, nats_address=nats_url):
        name = _deploy(plane, graph)

        def crash_looping() -> JsonDict | None:
            for pod in _pods(plane, namespace, "worker"):
                for status in pod.get("status", {}).get("containerStatuses") or []:
                    waiting = status.get("state", {}).get("waiting", {})
                    if waiting.get("reason") == "CrashLoopBackOff" and status["restartCount"] >= 1:
                        return dict(status)
            return None

        status = wait_for(crash_looping, 60, 0.3, "CrashLoopBackOff with a restart")
        terminated = status["lastState"]["terminated"]
        assert terminated["exitCode"] != 0
        assert terminated["reason"] == "Error"
        # FallbackToLogsOnError: the end of the failed run's log is the termination message.
        assert "no-such-engine" in terminated["message"]
        dgd = plane.rest.get(DGD_PATH.format(ns=namespace) + f"/{name}")
        ready = next(
            (c for c in dgd.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {}
        )
        assert ready.get("status") != "True"
        log = next((plane.state_dir / "pods").glob(f"{namespace}_*worker*/main.log")).read_text()
        assert "no-such-engine" in log


def test_graph_with_pvcs_becomes_ready(
    executing: ControlPlane, namespace: str, nats_url: str, repo_root: Path
) -> None:
    """The local provisioner binds the graph's PVCs to hostPath volumes in the state
    directory, so the pods schedule and the graph becomes Ready; restarting its worker's
    container kills and reruns the process."""
    plane = executing
    kubelet = plane.kubelet
    assert kubelet is not None
    graph = _recipe(repo_root, "recipes/vllm-agg.yaml", namespace)
    graph["metadata"]["name"] = "with-pvc"
    graph["spec"]["pvcs"] = [
        {
            "name": "with-pvc-cache",
            "create": True,
            "storageClass": "local",
            "size": "1Gi",
            "volumeAccessMode": "ReadWriteOnce",
        }
    ]
    graph["spec"]["services"]["worker"]["volumeMounts"] = [
        {"name": "with-pvc-cache", "mountPoint": "/cache"}
    ]
    previous = kubelet.provision_volumes
    kubelet.provision_volumes = True
    try:
        with running_operator(namespace, nats_address=nats_url):
            name = _deploy(plane, graph)
            wait_for(lambda: _ready(plane, namespace, name), READY_TIMEOUT, 0.5, "the DGD Ready")
            # dgd.dev/restart on an executed pod kills its process; the restart policy runs it
            # again (restartCount + 1, lastState terminated by SIGKILL).
            worker = _pods(plane, namespace, "worker")[0]
            restarted = plane.restart_container(namespace, worker["metadata"]["name"], "main")
            last = restarted["status"]["containerStatuses"][0]["lastState"]["terminated"]
            assert last["exitCode"] == 137
        claim = plane.rest.get(
            f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/with-pvc-cache"
        )
        assert claim["status"]["phase"] == "Bound"
        volume = plane.rest.get(f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}")
        assert Path(volume["spec"]["hostPath"]["path"]).is_dir()
    finally:
        kubelet.provision_volumes = previous
        with contextlib.suppress(ApiError):
            plane.rest.delete(
                f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/with-pvc-cache"
            )


def _seeded_chat(url: str, model: str) -> dict[str, Any]:
    """A chat completion whose mock-engine answer depends only on the seed and the prompt."""
    response = httpx.post(
        f"{url}/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": "What does a disaggregated graph do?"}],
            "max_tokens": 24,
            "ignore_eos": True,
            "seed": 1234,
        },
        timeout=30,
    )
    response.raise_for_status()
    return dict(response.json())


def test_disagg_recipe_answers_like_serve(
    executing: ControlPlane, namespace: str, nats_url: str, repo_root: Path, tmp_path: Path
) -> None:
    """recipes/vllm-disagg.yaml answers through the operator-built graph with its prefill
    really on the prefill pod, and gives the same answer for the same seed as `dgd serve`
    running the same file."""
    plane = executing
    graph = _recipe(repo_root, "recipes/vllm-disagg.yaml", namespace)
    services = graph["spec"]["services"]
    model = services["VllmDecodeWorker"]["extraPodSpec"]["mainContainer"]["args"][1]
    with running_operator(namespace, nats_address=nats_url):
        name = _deploy(plane, graph)
        wait_for(lambda: _ready(plane, namespace, name), READY_TIMEOUT, 0.5, "the DGD Ready")
        host, port = wait_for(
            lambda: access.resolve_target(plane.rest, namespace, f"svc/{name}-frontend", 8000),
            30,
            0.5,
            "a ready frontend endpoint",
        )
        url = f"http://{host}:{port}"
        # The frontend finds the prefill worker in discovery (it may register after the
        # decode worker is Ready), then sends each prompt's prefill there.
        wait_for(lambda: _disaggregated(url, model), 60, 0.5, "a disaggregated request")
        cluster = _seeded_chat(url, model)
        cached = cluster["usage"].get("prompt_tokens_details", {}).get("cached_tokens", 0)
        assert cached > 0, cluster["usage"]  # the decode worker got the prefilled prompt
        prefill = _pods(plane, namespace, "VllmPrefillWorker")[0]
        assert prefill["status"]["podIP"].startswith("10.244.")
        # The decode pod killed mid-stream: an error event; its replacement serves again.
        decode = _pods(plane, namespace, "VllmDecodeWorker")[0]
        _kill_mid_stream(plane, namespace, url, model, decode)
        wait_for(
            lambda: _replacement_ready(plane, namespace, "VllmDecodeWorker", decode),
            READY_TIMEOUT,
            0.5,
            "a Ready replacement decode worker",
        )
        wait_for(lambda: _chat(url, model), 30, 0.5, "a request to succeed again")

    serve = ServeProcess(repo_root / "recipes/vllm-disagg.yaml", free_port(), tmp_path)
    try:
        wait_for(lambda: serve.line(r"^Press Ctrl-C"), 120, 0.2, "dgd serve is up")
        assert serve.line(r"prefill 1 → decode 1 \(disaggregated\)") is not None
        local = _seeded_chat(serve.url, model)
    finally:
        assert serve.stop() == 0, serve.output()
    assert local["choices"][0]["message"]["content"] == cluster["choices"][0]["message"]["content"]
    assert local["usage"]["completion_tokens"] == cluster["usage"]["completion_tokens"] == 24


def _disaggregated(url: str, model: str) -> bool:
    """True once a chat completion sent now has been counted as disaggregated."""
    _chat(url, model, max_tokens=2)
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if "_disagg_requests_total{" in line and 'mode="disaggregated"' in line:
            return float(line.rsplit(" ", 1)[1]) >= 1
    return False
