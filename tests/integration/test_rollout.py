"""A managed worker rollout of a disaggregated graph whose pods really run (see
test_executed_pods): a worker spec change starts a new generation in its own runtime namespace,
the old one keeps serving until the new one is ready, then goes; a generation that cannot
start stays InProgress with the reason in the status while the old generation serves on."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import wait_for
from tests.integration.operator_harness import running_operator
from tests.integration.test_executed_pods import (  # noqa: F401 (fixtures)
    DGD_PATH,
    READY_TIMEOUT,
    _chat,
    _deploy,
    _ready,
    _recipe,
    executing,
    nats_url,
)

from dgd_operator.dev import access
from dgd_operator.dev.controlplane import ControlPlane
from dgd_operator.dev.rest import ApiError, JsonDict

pytestmark = pytest.mark.integration

HASH = "nvidia.com/dynamo-worker-hash"
COMPONENT = "nvidia.com/dynamo-component"
WORKERS = ("VllmDecodeWorker", "VllmPrefillWorker")


def _env(pod: JsonDict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0].get("env", [])}


def _is_ready(obj: JsonDict) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in obj.get("status", {}).get("conditions", []) or []
    )


class RolloutWatch:
    """Samples the graph's worker pods and Deployments; checks the invariants at every sample."""

    def __init__(self, plane: ControlPlane, namespace: str, name: str) -> None:
        self.plane, self.namespace, self.name = plane, namespace, name
        self.samples = 0

    def sample(self) -> dict[str, dict[str, int]]:
        """Ready pods per service and generation, after checking this instant's invariants."""
        rest = self.plane.rest
        pods = rest.get(f"/api/v1/namespaces/{self.namespace}/pods")["items"]
        deployments = {
            d["metadata"]["name"]: d
            for d in rest.get(f"/apis/apps/v1/namespaces/{self.namespace}/deployments")["items"]
        }
        ready: dict[str, dict[str, int]] = {svc: {} for svc in WORKERS}
        for pod in pods:
            labels = pod["metadata"].get("labels") or {}
            svc = labels.get(COMPONENT)
            if svc not in WORKERS:
                continue
            generation = labels[HASH]
            env = _env(pod)
            # Each pod runs in its own generation's runtime namespace, and only there.
            assert env["DYN_NAMESPACE_WORKER_SUFFIX"] == generation, pod["metadata"]["name"]
            assert env["DYN_NAMESPACE"] == f"{self.namespace}-{self.name}"
            assert labels["nvidia.com/selector"] == f"{self.name}-{svc.lower()}-{generation}"
            if _is_ready(pod) and not pod["metadata"].get("deletionTimestamp"):
                ready[svc][generation] = ready[svc].get(generation, 0) + 1
        for svc in WORKERS:
            # Something serves every worker service at every instant of the roll.
            assert sum(ready[svc].values()) >= 1 or not self.samples, (svc, ready)
            live = [
                d for d in deployments.values() if d["metadata"]["labels"].get(COMPONENT) == svc
            ]
            assert live, f"every generation of {svc} was removed"
        self.samples += 1
        return ready


def _phases(
    plane: ControlPlane, namespace: str, name: str, seen: list[str], stop: threading.Event
) -> None:
    """Record every `status.rollingUpdate.phase` the DGD goes through (a watch, not polling)."""
    rest = plane.rest
    path = DGD_PATH.format(ns=namespace)
    version = rest.get(path)["metadata"]["resourceVersion"]
    while not stop.is_set():
        try:
            for event in rest.watch(
                path, version, timeout_seconds=5, fieldSelector=f"metadata.name={name}"
            ):
                obj = event["object"]
                version = obj["metadata"].get("resourceVersion", version)
                phase = ((obj.get("status") or {}).get("rollingUpdate") or {}).get("phase")
                if phase and (not seen or seen[-1] != phase):
                    seen.append(phase)
        except ApiError:
            version = rest.get(path)["metadata"]["resourceVersion"]


def _status(plane: ControlPlane, namespace: str, name: str) -> JsonDict:
    return dict(plane.rest.get(DGD_PATH.format(ns=namespace) + f"/{name}").get("status") or {})


def _generation(plane: ControlPlane, namespace: str, name: str) -> str:
    names = _status(plane, namespace, name)["services"]["VllmDecodeWorker"]["componentNames"]
    assert len(names) == 1, names
    return str(names[0]).rsplit("-", 1)[1]


def _set_worker_env(plane: ControlPlane, namespace: str, name: str, value: str) -> None:
    """A change of the workers only (the frontend keeps running: no new frontend pod)."""
    env = [{"name": "ROLLOUT_MARK", "value": value}]
    patch: dict[str, Any] = {"spec": {"services": {svc: {"envs": env} for svc in WORKERS}}}
    plane.rest.patch(DGD_PATH.format(ns=namespace) + f"/{name}", patch)


def test_rollout_disagg(
    executing: ControlPlane,  # noqa: F811
    namespace: str,
    nats_url: str,  # noqa: F811
    repo_root: Path,
) -> None:
    """Old generation serves until the new one is ready; phases Pending → InProgress →
    Completed; a crashing generation stays InProgress with its reason, the old one serving."""
    plane = executing
    graph = _recipe(repo_root, "recipes/vllm-disagg.yaml", namespace)
    model = graph["spec"]["services"]["VllmDecodeWorker"]["extraPodSpec"]["mainContainer"]["args"][
        1
    ]
    with running_operator(namespace, nats_address=nats_url):
        name = _deploy(plane, graph)
        wait_for(lambda: _ready(plane, namespace, name), READY_TIMEOUT, 0.5, "the DGD Ready")
        first = _generation(plane, namespace, name)
        status = _status(plane, namespace, name)
        assert status["services"]["VllmDecodeWorker"]["runtimeNamespace"].endswith(f"-{first}")
        host, port = wait_for(
            lambda: access.resolve_target(plane.rest, namespace, f"svc/{name}-frontend", 8000),
            30,
            0.5,
            "a ready frontend endpoint",
        )
        url = f"http://{host}:{port}"
        wait_for(lambda: _chat(url, model), 60, 0.5, "a first answer")

        watch = RolloutWatch(plane, namespace, name)
        watch.sample()
        seen: list[str] = []
        stop = threading.Event()
        recorder = threading.Thread(target=_phases, args=(plane, namespace, name, seen, stop))
        recorder.start()
        try:
            _set_worker_env(plane, namespace, name, "2")

            def completed() -> bool:
                watch.sample()
                return _status(plane, namespace, name).get("rollingUpdate", {}).get(
                    "phase"
                ) == "Completed" and bool(_ready(plane, namespace, name))

            wait_for(completed, READY_TIMEOUT * 2, 0.3, "the rollout to complete")
        finally:
            stop.set()
            recorder.join(15)
        assert seen == ["Pending", "InProgress", "Completed"], seen
        second = _generation(plane, namespace, name)
        assert second != first
        final = watch.sample()
        assert all(set(final[svc]) == {second} for svc in WORKERS), final
        answer = wait_for(lambda: _chat(url, model), 30, 0.5, "an answer from the new generation")
        assert answer["usage"]["completion_tokens"] > 0

        # A generation whose decode worker crashes: InProgress, the reason in the status, the
        # old generation kept and serving.
        main = graph["spec"]["services"]["VllmDecodeWorker"]["extraPodSpec"]["mainContainer"]
        plane.rest.patch(
            DGD_PATH.format(ns=namespace) + f"/{name}",
            {
                "spec": {
                    "services": {
                        "VllmDecodeWorker": {
                            "extraPodSpec": {
                                "mainContainer": {
                                    **main,
                                    "command": ["python3", "-m", "dgd_runtime.worker"],
                                    "args": ["--engine", "no-such-engine", "--model-path", "/x"],
                                }
                            }
                        }
                    }
                }
            },
        )

        def stuck() -> JsonDict | None:
            watch.sample()
            current = _status(plane, namespace, name)
            ready = next(c for c in current["conditions"] if c["type"] == "Ready")
            if "CrashLoopBackOff" in ready.get("message", ""):
                return current
            return None

        current = wait_for(stuck, READY_TIMEOUT, 0.5, "the crash to show in the status")
        assert current["rollingUpdate"]["phase"] == "InProgress"
        ready = next(c for c in current["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "rolling_update_in_progress")
        serving = watch.sample()
        assert serving["VllmDecodeWorker"].get(second, 0) >= 1, serving
        answer = wait_for(lambda: _chat(url, model), 30, 0.5, "an answer from the old generation")
        assert answer["usage"]["completion_tokens"] > 0
