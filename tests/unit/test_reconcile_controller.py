"""The controller's reconcile against a recording fake client and an in-memory cluster view."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from dgd_operator.kube import TransientError
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

    def children(self, key: Key) -> list[Mapping[str, Any]]:
        return list(self.objects.values())

    def pull_secrets(self, namespace: str) -> dict[str, tuple[str, ...]]:
        return {}

    def group_pods(self, key: Key) -> list[Mapping[str, Any]]:
        return []

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
    # Deliver our writes to the watch cache: children and status (nothing is written on the DGD itself).
    assert not any(c[0] == "patch" for c in client.writes())
    for live in client.applied:
        if live["kind"] != "DynamoGraphDeployment":
            view.objects[child_key(live)] = live
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


def test_rejection_mark_ignores_status() -> None:
    from dgd_operator.reconcile.controller import rejection_mark

    body = _dgd()
    mark = rejection_mark(body)
    body["status"] = {"state": "failed"}
    assert rejection_mark(body) == mark
    body["metadata"]["annotations"] = {}
    body["metadata"]["annotations"]["nvidia.com/dynamo-discovery-backend"] = "etcd"
    assert rejection_mark(body) != mark


def _deliver(view: FakeView, client: FakeClient, controller: Controller) -> None:
    """Our writes reach the watch cache (children and status; deleted children disappear)."""
    for live in client.applied:
        if live["kind"] != "DynamoGraphDeployment":
            view.objects[child_key(live)] = live
    deleted = {c[1] for c in client.calls if c[0] == "delete"}
    view.objects = {k: v for k, v in view.objects.items() if k[2] not in deleted}
    view.dgd_body["status"] = copy.deepcopy(controller.written_status[KEY])
    client.applied.clear()


def _owned(view: FakeView) -> None:
    for obj in view.objects.values():
        obj["metadata"]["ownerReferences"] = [{"uid": "u1"}]


async def test_removed_service_children_are_deleted_and_the_graph_stays_successful() -> None:
    controller, view, client = _controller(_dgd())
    await controller.reconcile(KEY)
    _deliver(view, client, controller)
    _owned(view)
    client.calls.clear()
    del view.dgd_body["spec"]["services"]["worker"]
    view.dgd_body["metadata"]["generation"] = 2
    await controller.reconcile(KEY)
    assert sorted(c[1] for c in client.calls if c[0] == "delete") == ["g-worker", "g-worker"]  # Deployment, Service
    status = controller.written_status[KEY]
    assert status["state"] == "successful" and set(status["services"]) == {"Frontend"}


async def test_single_to_multinode_flip_rebuilds_workloads_and_creates_the_mpi_secret() -> None:
    controller, view, client = _controller(_dgd())
    await controller.reconcile(KEY)
    _deliver(view, client, controller)
    _owned(view)
    client.calls.clear()
    view.dgd_body["spec"]["services"]["worker"]["multinode"] = {"nodeCount": 2}
    view.dgd_body["metadata"]["generation"] = 2
    await controller.reconcile(KEY)
    applied = {name for kind, name in client.calls if kind == "apply"}
    assert {"g-worker-0-ldr", "g-worker-0-wkr", "g-worker-nodes"} <= applied
    assert ("delete", "g-worker") in client.calls  # the Deployment goes (the Service is re-applied)
    assert ("get", "mpi-run-ssh-secret") in client.calls and ("create", "Secret") in client.calls
    status = controller.written_status[KEY]
    assert status["services"]["worker"]["componentKind"] == "StatefulSet"
    assert status["services"]["worker"]["groups"] == [{"index": 0, "name": "g-worker-0", "phase": "Starting", "restarts": 0}]
    # Once per namespace and process.
    client.calls.clear()
    await controller.reconcile(KEY)
    assert ("get", "mpi-run-ssh-secret") not in client.calls


async def test_too_long_dynamo_namespace_is_rejected_before_any_write() -> None:
    body = _dgd()
    body["metadata"]["name"] = "g" * 40
    body["metadata"]["namespace"] = "n" * 30
    controller, _, client = _controller(body)
    key = ("n" * 30, "g" * 40)
    await controller.reconcile(key)
    assert [c[0] for c in client.writes()] == ["apply/status", "create"]
    message = controller.written_status[key]["conditions"][0]["message"]
    assert message.startswith("metadata.name: the Dynamo namespace") and "at most 32 characters" in message


def test_mpi_ssh_secret_holds_an_openssh_key_pair() -> None:
    import base64

    from cryptography.hazmat.primitives import serialization

    from dgd_operator.reconcile.mpi import mpi_ssh_secret

    secret = mpi_ssh_secret("ns", "mpi-run-ssh-secret", bits=1024)
    assert secret["metadata"] == {
        "name": "mpi-run-ssh-secret", "namespace": "ns", "labels": {"app.kubernetes.io/managed-by": "dgd-operator"},
    }
    private = base64.b64decode(secret["data"]["private.key"])
    public = base64.b64decode(secret["data"]["private.key.pub"])
    key = serialization.load_ssh_private_key(private, password=None)
    assert public.split()[0] == b"ssh-rsa"
    assert key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ) == b" ".join(public.split()[:2])


def test_only_multinode_group_pods_are_watched_server_side() -> None:
    from kopf._cogs.structs.references import Resource

    from dgd_operator.handlers import GROUP_POD_SELECTOR, kopf_settings

    pods = Resource("", "v1", "pods", namespaced=True)
    assert kopf_settings().watching.label_selectors.collect(pods) == [GROUP_POD_SELECTOR]
    assert GROUP_POD_SELECTOR == "nvidia.com/dynamo-graph-deployment-name,role in (leader,worker),instance-id"
    deployments = Resource("apps", "v1", "deployments", namespaced=True)
    assert kopf_settings().watching.label_selectors.collect(deployments) == []


def test_label_value_problems_skip_global_namespaces_and_name_long_dgd_names() -> None:
    from dgd_operator.api.validation import parse_dgd
    from dgd_operator.build.names import label_value_problems

    body = _dgd()
    body["metadata"]["name"] = "g" * 40
    dgd = parse_dgd(body)
    assert label_value_problems("n" * 22, dgd) == []  # 22 + 1 + 40 = 63
    [(path, _)] = label_value_problems("n" * 23, dgd)
    assert path == "metadata.name"
    for spec in dgd.spec.services.values():
        spec.global_dynamo_namespace = True
    assert label_value_problems("n" * 23, dgd) == []
    dgd.metadata.name = "g" * 64
    [(path, message)] = label_value_problems("n", dgd)
    assert path == "metadata.name" and "nvidia.com/dynamo-graph-deployment-name" in message
