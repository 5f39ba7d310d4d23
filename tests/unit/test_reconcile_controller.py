"""The controller's reconcile against a recording fake client and an in-memory cluster view."""

from __future__ import annotations

import asyncio
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
    from dgd_operator.builders.names import label_value_problems

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


class GatedClient(FakeClient):
    """Holds every apply until `release` is set, counting how many are in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = asyncio.Event()
        self.order: list[str] = []
        self.waiting: list[str] = []
        self.fail_name: str | None = None

    async def apply(self, manifest: dict[str, Any], *, subresource: str | None = None, force: bool = True) -> dict[str, Any]:
        if subresource:
            return await super().apply(manifest, subresource=subresource, force=force)
        self.in_flight += 1
        self.waiting.append(manifest["kind"])
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        self.order.append(manifest["kind"])
        if manifest["metadata"]["name"] == self.fail_name and manifest["kind"] == "Service":
            raise TransientError(503, "ServiceUnavailable", "etcd leader changed")
        return await super().apply(manifest, subresource=subresource, force=force)


def _gated(dgd: dict[str, Any]) -> tuple[Controller, FakeView, GatedClient]:
    controller = Controller(OperatorSettings(workers=1))
    view, client = FakeView(dgd), GatedClient()
    controller.bind_view(view)
    controller.client = client  # type: ignore[assignment]
    return controller, view, client


async def _settle() -> None:
    """Let every task run until it blocks (the fakes never touch the network)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_children_are_applied_concurrently_workloads_after_everything_they_use() -> None:
    controller, _, client = _gated(_dgd())
    reconcile = asyncio.create_task(controller.reconcile(KEY))
    # Wave 1: every non-workload child at once, and no workload yet.
    await _settle()
    assert client.in_flight == len(client.waiting) >= 2
    assert "Service" in client.waiting and not {"Deployment", "StatefulSet"} & set(client.waiting)
    client.release.set()
    outcome = await reconcile
    kinds = client.order
    first_workload = min(i for i, kind in enumerate(kinds) if kind in {"Deployment", "StatefulSet"})
    assert all(kind in {"Deployment", "StatefulSet"} for kind in kinds[first_workload:])
    assert outcome.applied == len(kinds)
    # Becoming ready is the Ready condition's transition; the only Event is the one naming what was created.
    assert controller.written_status[KEY]["state"] == "successful"
    assert [c for c in client.calls if c[0] == "create"] == [("create", "Event")]


async def test_a_failed_apply_fails_the_reconcile_after_its_wave_and_keeps_the_others() -> None:
    controller, _, client = _gated(_dgd())
    client.fail_name = "g-worker"
    client.release.set()
    with pytest.raises(TransientError):
        await controller.reconcile(KEY)
    assert "Deployment" not in client.order  # wave 2 never started
    applied = {name for kind, name in client.calls if kind == "apply"}
    assert "g-frontend" in applied  # its wave-mate went through and is remembered
    assert any(ck[2] == "g-frontend" for ck in controller.records["ns"])
    # The retry applies only what is still missing (the recorded Service is not sent again).
    client.fail_name = None
    client.calls.clear()
    await controller.reconcile(KEY)
    assert client.calls.count(("apply", "g-worker")) == 2  # its Service, then its Deployment
    assert client.calls.count(("apply", "g-frontend")) == 1  # only the Deployment


async def test_kube_client_bounds_requests_in_flight() -> None:
    from aiohttp import web

    from dgd_operator.kube import Credentials, KubeClient

    state = {"now": 0, "most": 0}

    async def handler(request: web.Request) -> web.Response:
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
        await asyncio.sleep(0.02)
        state["now"] -= 1
        return web.json_response({"kind": "ConfigMap", "metadata": {"name": request.match_info["name"]}})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/configmaps/{name}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        client = KubeClient(Credentials(server=f"http://127.0.0.1:{port}"), max_in_flight=3)
        try:
            found = await asyncio.gather(*(client.get("v1", "ConfigMap", "ns", f"c{i}") for i in range(12)))
        finally:
            await client.close()
        assert [obj and obj["metadata"]["name"] for obj in found] == [f"c{i}" for i in range(12)]
        assert state["most"] == 3
    finally:
        await runner.cleanup()


def test_per_event_handlers_are_coroutines_so_kopf_never_hops_to_its_thread_pool() -> None:
    import inspect

    import kopf

    from dgd_operator.handlers import register

    registry = kopf.OperatorRegistry()
    register(registry, Controller(OperatorSettings(workers=1, image_pull_secret_discovery=True)))
    handlers = [*registry._indexing.get_all_handlers(), *registry._watching.get_all_handlers()]
    assert len(handlers) >= 20  # DGDs, every child kind, group pods, pull secrets: index + event each
    assert [h.id for h in handlers if not inspect.iscoroutinefunction(h.fn)] == []


async def test_run_all_awaits_every_call_and_raises_the_first_failure_in_order() -> None:
    from dgd_operator.reconcile.controller import run_all

    finished: list[str] = []

    async def step(name: str, delay: int, error: Exception | None = None) -> str:
        for _ in range(delay):
            await asyncio.sleep(0)
        finished.append(name)
        if error is not None:
            raise error
        return name

    assert await run_all([step("a", 2), step("b", 0)]) == ["a", "b"]
    finished.clear()
    with pytest.raises(KeyError):
        await run_all([step("slow", 5), step("first", 3, KeyError("first")), step("fast", 0, ValueError("fast"))])
    assert sorted(finished) == ["fast", "first", "slow"]  # nothing was left running
    assert await run_all([]) == []


