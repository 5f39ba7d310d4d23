"""The controller's reconcile against a recording fake client and an in-memory cluster view."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dgd_operator.kube import TransientError
from dgd_operator.reconcile.constants import ANNOTATION_ACCEPTED_SPEC
from dgd_operator.reconcile.controller import Controller, Key
from dgd_operator.reconcile.sync import child_key
from dgd_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

KEY: Key = ("ns", "g")


def _dgd(**worker: Any) -> dict[str, Any]:
    return {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": "g", "namespace": "ns", "uid": "u1", "generation": 1, "resourceVersion": "1"},
        "spec": {
            "backendFramework": "vllm",
            "services": {
                "Frontend": {"componentType": "frontend", "extraPodSpec": {"mainContainer": {"image": "fe:1"}}},
                "worker": {
                    "componentType": "worker",
                    "extraPodSpec": {"mainContainer": {"image": "w:1", "command": ["python3", "-m", "dynamo.vllm"]}},
                    **worker,
                },
            },
        },
    }


class FakeView:
    """The watch cache: the DGD and its children."""

    def __init__(self, dgd: dict[str, Any]) -> None:
        self.dgd_body = dgd
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}

    def dgd(self, key: Key) -> dict[str, Any] | None:
        return self.dgd_body

    def children(self, key: Key) -> list[dict[str, Any]]:
        return list(self.objects.values())

    def pull_secrets(self, namespace: str) -> dict[str, tuple[str, ...]]:
        return {}

    def object_counts(self) -> dict[str, int]:
        return {"DynamoGraphDeployment": 1}


class FakeClient:
    """Records writes; `apply` answers like the API server (uid, generation, ready status)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.applied: list[dict[str, Any]] = []
        self.fail_with: Exception | None = None

    async def apply(self, manifest: dict[str, Any], *, subresource: str | None = None, force: bool = True) -> dict[str, Any]:
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(("apply" + (f"/{subresource}" if subresource else ""), manifest["metadata"]["name"]))
        live = copy.deepcopy(manifest)
        live["metadata"].update(uid=f"uid-{manifest['metadata']['name']}", generation=1)
        replicas = live.get("spec", {}).get("replicas", 1)
        live["status"] = {
            "observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas,
            "conditions": [{"type": "Available", "status": "True"}],
        }
        self.applied.append(live)
        return live

    async def merge_patch(self, api_version: str, kind: str, namespace: str | None, name: str, patch: Any, *, subresource: str | None = None) -> dict[str, Any]:
        self.calls.append(("patch", name))
        return {}

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", manifest["kind"]))
        return manifest

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", name))
        return None

    async def delete(self, *args: Any, **kwargs: Any) -> bool:
        self.calls.append(("delete", args[3]))
        return True

    async def close(self) -> None:
        return None

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] != "get"]


def _controller(dgd: dict[str, Any]) -> tuple[Controller, FakeView, FakeClient]:
    controller = Controller(OperatorSettings(workers=1))
    view, client = FakeView(dgd), FakeClient()
    controller.bind_view(view)
    controller.client = client  # type: ignore[assignment]
    return controller, view, client


async def test_converged_graph_costs_no_writes_even_for_a_fresh_controller() -> None:
    controller, view, client = _controller(_dgd())
    await controller.reconcile(KEY)
    kinds = [c[0] for c in client.writes()]
    assert "apply/status" in kinds and kinds.count("apply") >= 3
    # Deliver our writes to the watch cache: children, status, accepted-spec annotation.
    for live in client.applied:
        if live["kind"] != "DynamoGraphDeployment":
            view.objects[child_key(live)] = live
    view.dgd_body["metadata"]["annotations"] = {ANNOTATION_ACCEPTED_SPEC: controller.written_accepted[KEY]}
    view.dgd_body["status"] = copy.deepcopy(controller.written_status[KEY])
    assert view.dgd_body["status"]["state"] == "successful"

    client.calls.clear()
    await controller.reconcile(KEY)
    assert client.writes() == []

    # A new controller (operator restart) has no memory, and still writes nothing.
    fresh, _, fresh_client = _controller(view.dgd_body)
    fresh.bind_view(view)
    await fresh.reconcile(KEY)
    assert fresh_client.writes() == []


async def test_transient_errors_are_retried_with_backoff_not_raised() -> None:
    controller, _, client = _controller(_dgd())
    client.fail_with = TransientError(503, "ServiceUnavailable", "etcd leader changed")
    await controller.process(KEY)
    await controller.process(KEY)
    assert controller.failures[KEY] == 2
    assert "ns" in str(controller.queue._timers)  # a retry is scheduled
    controller.queue.close()
    client.fail_with = None
    await controller.process(KEY)
    assert KEY not in controller.failures


async def test_invalid_spec_is_reported_once_per_generation() -> None:
    controller, view, client = _controller(_dgd(replicas=-1))
    await controller.reconcile(KEY)
    assert [c[0] for c in client.writes()] == ["apply/status", "create"]
    assert controller.written_status[KEY]["state"] == "failed"
    message = controller.written_status[KEY]["conditions"][0]["message"]
    assert "spec.services.worker.replicas" in message
    client.calls.clear()
    await controller.reconcile(KEY)
    assert client.calls == []
    # A spec change (new generation) is looked at again.
    view.dgd_body["metadata"]["generation"] = 2
    view.dgd_body["spec"]["services"]["worker"]["replicas"] = 1
    await controller.reconcile(KEY)
    assert any(c[0] == "apply" for c in client.calls)


def test_docker_config_registries_reads_hosts_only() -> None:
    import base64
    import json

    from dgd_operator.handlers import docker_config_registries

    config = {"auths": {"nvcr.io": {"auth": "eA=="}, "https://index.docker.io/v1/": {}}}
    secret = {"data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}
    assert docker_config_registries(secret) == ("https://index.docker.io/v1/", "nvcr.io")
    assert docker_config_registries({"data": {".dockerconfigjson": "not base64!"}}) == ()
    assert docker_config_registries({}) == ()


def test_rejection_mark_ignores_status_and_our_annotation() -> None:
    from dgd_operator.reconcile.controller import rejection_mark

    body = _dgd()
    mark = rejection_mark(body)
    body["status"] = {"state": "failed"}
    body["metadata"]["annotations"] = {ANNOTATION_ACCEPTED_SPEC: "{}"}
    assert rejection_mark(body) == mark
    body["metadata"]["annotations"]["nvidia.com/dynamo-discovery-backend"] = "etcd"
    assert rejection_mark(body) != mark
