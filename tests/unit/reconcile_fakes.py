"""In-memory stand-ins for the API and the watch cache, typed against the real Protocols.

`FakeKube` implements `controllerkit.kubeapi.KubeAPI` and answers like the API server (applies
return the object with a uid, generation and a ready status); `FakeView` implements
`reconcile.view.ClusterView` over dicts, and hands out the DGD at the storage version (v1beta1)
as the operator's watch does, whichever version a test wrote it in. Not a test module.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from dgd_operator.api.constants import GROUP_VERSION_V1BETA1, LABEL_GRAPH
from dgd_operator.api.conversion import convert
from dgd_operator.controllerkit.kubeapi import KubeAPI, Manifest
from dgd_operator.reconcile.controller import Controller
from dgd_operator.reconcile.state import Key
from dgd_operator.reconcile.sync import ChildKey, child_key
from dgd_operator.reconcile.view import ClusterView, SharedKey
from dgd_operator.settings import OperatorSettings

KEY: Key = ("ns", "g")


def dgd(**worker: Any) -> dict[str, Any]:
    """The graph `ns/g`: a frontend and a vLLM worker (extra worker fields from `worker`)."""
    return {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {
            "name": "g",
            "namespace": "ns",
            "uid": "u1",
            "generation": 1,
            "resourceVersion": "1",
        },
        "spec": {
            "backendFramework": "vllm",
            "services": {
                "Frontend": {
                    "componentType": "frontend",
                    "extraPodSpec": {"mainContainer": {"image": "fe:1"}},
                },
                "worker": {
                    "componentType": "worker",
                    "extraPodSpec": {
                        "mainContainer": {
                            "image": "w:1",
                            "command": ["python3", "-m", "dynamo.vllm"],
                        }
                    },
                    **worker,
                },
            },
        },
    }


class FakeView:
    """The watch cache: the DGD, its children, namespace-wide objects and group pods."""

    def __init__(self, body: dict[str, Any] | None) -> None:
        self.dgd_body = body
        self.objects: dict[ChildKey, dict[str, Any]] = {}
        self.shared: set[SharedKey] = set()
        self.pods: list[Mapping[str, Any]] = []

    def dgd(self, key: Key) -> Mapping[str, Any] | None:
        if self.dgd_body is None:
            return None
        return convert(self.dgd_body, GROUP_VERSION_V1BETA1)

    def children(self, key: Key) -> list[Mapping[str, Any]]:
        return list(self.objects.values())

    def shared_objects(self, namespace: str) -> set[SharedKey]:
        return set(self.shared)

    def pull_secrets(self, namespace: str) -> dict[str, tuple[str, ...]]:
        return {}

    def group_pods(self, key: Key) -> list[Mapping[str, Any]]:
        return list(self.pods)

    def graph_pods(self, key: Key) -> list[Mapping[str, Any]]:
        return list(self.pods)

    def object_counts(self) -> dict[str, int]:
        return {"DynamoGraphDeployment": 1}


class FakeKube:
    """Records every call; `apply` answers like the API server (uid, generation, ready status)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.applied: list[Manifest] = []
        self.events: list[Manifest] = []
        self.created: list[str] = []
        """Kinds POSTed (Events left out)."""
        self.existing: dict[tuple[str, str], Manifest] = {}
        """(kind, name) -> object a GET finds."""
        self.discovery: dict[str, Manifest] = {}
        """Discovery path -> document (absent: 404, the API is not served)."""
        self.fail_with: Exception | None = None
        self.ready = True
        """False: applied workloads come back with no ready replica (pods not scheduled)."""

    async def apply(
        self, manifest: Manifest, *, subresource: str | None = None, force: bool = True
    ) -> Manifest:
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(
            ("apply" + (f"/{subresource}" if subresource else ""), manifest["metadata"]["name"])
        )
        return self._answer(manifest)

    def _answer(self, manifest: Manifest) -> Manifest:
        """The object as the API server returns it from a write (uid, generation, status)."""
        live = copy.deepcopy(manifest)
        live["metadata"].update(uid=f"uid-{manifest['metadata']['name']}", generation=1)
        replicas = live.get("spec", {}).get("replicas", 1)
        ready = replicas if self.ready else 0
        live["status"] = {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [{"type": "Available", "status": "True"}],
        }
        self.applied.append(live)
        return live

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> Manifest:
        self.calls.append(("patch" + (f"/{subresource}" if subresource else ""), name))
        return {}

    async def json_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        operations: Sequence[Mapping[str, Any]],
    ) -> Manifest:
        self.calls.append(("patch", name))
        return {}

    async def create(self, manifest: Manifest) -> Manifest:
        """Events are recorded as `("create", "Event")`; other objects as `("create", name)`
        (and `created_kinds`), answered like `apply` answers."""
        if self.fail_with is not None and manifest["kind"] != "Event":
            raise self.fail_with
        if manifest["kind"] == "Event":
            self.calls.append(("create", "Event"))
            self.events.append(manifest)
            return manifest
        self.calls.append(("create", manifest["metadata"]["name"]))
        self.created.append(str(manifest["kind"]))
        live = self._answer(manifest)
        if LABEL_GRAPH not in (manifest["metadata"].get("labels") or {}):
            self.applied.pop()  # namespace-wide (the MPI Secret): never a child in the cache
        return live

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> Manifest | None:
        self.calls.append(("get", name))
        return self.existing.get((kind, name))

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str | None = None,
    ) -> list[Manifest]:
        self.calls.append(("list", kind))
        return [obj for (k, _), obj in sorted(self.existing.items()) if k == kind]

    async def discover(self, path: str) -> Manifest | None:
        self.calls.append(("get", path))
        return self.discovery.get(path)

    async def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        uid: str | None = None,
        propagation: str = "Background",
    ) -> bool:
        self.calls.append(("delete", name))
        return True

    async def close(self) -> None:
        return None

    def writes(self) -> list[tuple[str, str]]:
        """Every call but reads (GETs and lists)."""
        return [c for c in self.calls if c[0] not in ("get", "list")]

    def created_kinds(self) -> list[str]:
        """Kinds POSTed, Events left out."""
        return list(self.created)

    def written(self) -> list[str]:
        """Names of objects created or applied (whole objects, not status), in order."""
        return [
            name for verb, name in self.calls if verb in ("apply", "create") and name != "Event"
        ]

    def event_reasons(self) -> list[str]:
        """Reasons of the Events posted, in order."""
        return [str(event["reason"]) for event in self.events]


def controller_for(
    body: dict[str, Any] | None,
    *,
    client: FakeKube | None = None,
    settings: OperatorSettings | None = None,
    controller: Controller | None = None,
) -> tuple[Controller, FakeView, FakeKube]:
    """A controller bound to a fresh `FakeView` of `body` and a `FakeKube` (no workers)."""
    controller = controller or Controller(settings or OperatorSettings(workers=1))
    view, kube = FakeView(body), client or FakeKube()
    bind(controller, view, kube)
    return controller, view, kube


def bind(controller: Controller, view: ClusterView, client: KubeAPI) -> None:
    """Attach the fakes (what kopf's startup and index handlers do in production)."""
    controller.bind_view(view)
    controller.client = client


def deliver(view: FakeView, client: FakeKube, controller: Controller, key: Key = KEY) -> None:
    """Our writes reach the watch cache: children, status; deleted children disappear."""
    for live in client.applied:
        if live["kind"] != "DynamoGraphDeployment":
            view.objects[child_key(live)] = live
    deleted = {c[1] for c in client.calls if c[0] == "delete"}
    view.objects = {k: v for k, v in view.objects.items() if k[2] not in deleted}
    memory = controller.state.graphs[key]
    assert view.dgd_body is not None and memory.written_status is not None
    view.dgd_body["status"] = copy.deepcopy(memory.written_status)
    client.applied.clear()


def owned(view: FakeView, uid: str = "u1") -> None:
    """Give every child in the cache an owner reference to `uid` (as the builders do)."""
    for obj in view.objects.values():
        obj["metadata"]["ownerReferences"] = [{"uid": uid}]
