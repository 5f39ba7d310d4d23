"""Dynamo's current API on a real API server: v1beta1 stored, v1alpha1 served by conversion.

The session's control plane installs dgd's CRDs (both versions, conversion by webhook) with the
URL of dgd's webhook server (`python -m dgd_operator.admission`, started by the control plane),
so every request here at the version the API server does not store went through our
`/convert`. Objects are compared through the API only (no etcd reads): the stored version shows
in what a v1beta1 GET returns, and Dynamo's `nvidia.com/dgd-spec` annotation is what the way up
left for the way down.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.fixtures.catalog import load_graph
from tests.fixtures.dgd import DGD
from tests.helpers import wait_for
from tests.integration.operator_harness import running_operator

from dgd_operator.admission.migration import migrate_stored_versions
from dgd_operator.api.conversion import convert
from dgd_operator.dev.controlplane import ControlPlane, free_port
from dgd_operator.dev.rest import ApiError, KubeRest
from dgd_operator.main import connect
from dgd_operator.tools.helm import ensure_kubectl

pytestmark = pytest.mark.integration

A1 = "/apis/nvidia.com/v1alpha1/namespaces/{ns}/{plural}"
B1 = "/apis/nvidia.com/v1beta1/namespaces/{ns}/{plural}"
DGDS = "dynamographdeployments"
DGDSAS = "dynamographdeploymentscalingadapters"
DWMS = "dynamoworkermetadatas"
SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")


def graph(name: str) -> dict[str, Any]:
    """A small valid v1alpha1 graph with some alpha-only data (a service annotation)."""
    doc = DGD(name).backend("vllm").frontend().worker("decode").gpus(1).engine("vllm").build()
    doc["spec"]["services"]["decode"]["annotations"] = {"team": "inference"}
    doc["spec"]["services"]["decode"]["replicas"] = 2
    doc["spec"]["services"]["Frontend"]["replicas"] = 1
    return doc


def user_view(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` without what the API server adds (ids, generation, status)."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    for key in SERVER_FIELDS:
        out["metadata"].pop(key, None)
    return out


def test_a_v1alpha1_graph_is_stored_as_v1beta1_and_reads_back_identically(
    control_plane: ControlPlane, namespace: str
) -> None:
    rest = control_plane.rest
    doc = graph("alpha")
    created = rest.post(A1.format(ns=namespace, plural=DGDS), doc)
    assert user_view(created) == {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}

    hub = rest.get(f"{B1.format(ns=namespace, plural=DGDS)}/alpha")
    assert hub["apiVersion"] == "nvidia.com/v1beta1"
    components = {c["name"]: c for c in hub["spec"]["components"]}
    assert set(components) == {"Frontend", "decode"}
    assert components["decode"]["replicas"] == 2
    # The alpha-only service annotation travels in Dynamo's annotation, as Dynamo stores it.
    assert "nvidia.com/dgd-spec" in hub["metadata"]["annotations"]
    assert user_view(hub) == user_view(convert(created, "v1beta1"))

    again = rest.get(f"{A1.format(ns=namespace, plural=DGDS)}/alpha")
    assert user_view(again) == user_view(created)


def test_a_v1beta1_graph_reads_as_v1alpha1(control_plane: ControlPlane, namespace: str) -> None:
    rest = control_plane.rest
    hub = convert(graph("beta"), "v1beta1")
    hub["metadata"].pop("annotations", None)  # a graph written natively at v1beta1
    created = rest.post(B1.format(ns=namespace, plural=DGDS), hub)
    assert created["spec"]["components"][0]["name"] == "Frontend"
    spoke = rest.get(f"{A1.format(ns=namespace, plural=DGDS)}/beta")
    assert spoke["apiVersion"] == "nvidia.com/v1alpha1"
    assert set(spoke["spec"]["services"]) == {"Frontend", "decode"}
    assert spoke["spec"]["services"]["decode"]["replicas"] == 2
    assert user_view(convert(spoke, "v1beta1")) == user_view(created)


def test_kubectl_gets_both_versions(control_plane: ControlPlane, namespace: str) -> None:
    rest = control_plane.rest
    rest.post(A1.format(ns=namespace, plural=DGDS), graph("listed"))
    kubectl = [
        str(ensure_kubectl()),
        "--kubeconfig",
        str(control_plane.kubeconfig),
        "-n",
        namespace,
    ]
    for resource in ("dgd.v1alpha1.nvidia.com", "dgd.v1beta1.nvidia.com"):
        result = subprocess.run(
            [*kubectl, "get", resource, "-o", "name"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["dynamographdeployment.nvidia.com/listed"]
    # v1alpha1 requests carry Dynamo's deprecation warning, v1beta1 ones none.
    _, _, warnings = rest.request_full("GET", f"{A1.format(ns=namespace, plural=DGDS)}/listed")
    assert any(
        w.startswith("nvidia.com/v1alpha1 DynamoGraphDeployment is deprecated") for w in warnings
    ), warnings
    _, _, warnings = rest.request_full("GET", f"{B1.format(ns=namespace, plural=DGDS)}/listed")
    assert warnings == []


def test_an_adapter_converts_and_scales_at_v1beta1(
    control_plane: ControlPlane, namespace: str
) -> None:
    rest = control_plane.rest
    adapter = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeploymentScalingAdapter",
        "metadata": {"name": "g-decode"},
        "spec": {"replicas": 1, "dgdRef": {"name": "g", "serviceName": "decode"}},
    }
    rest.post(A1.format(ns=namespace, plural=DGDSAS), adapter)
    path = f"{B1.format(ns=namespace, plural=DGDSAS)}/g-decode"
    assert rest.get(path)["spec"]["dgdRef"] == {"name": "g", "componentName": "decode"}
    rest.patch(f"{path}/scale", {"spec": {"replicas": 3}})
    spoke = rest.get(f"{A1.format(ns=namespace, plural=DGDSAS)}/g-decode")
    assert spoke["spec"] == {"replicas": 3, "dgdRef": {"name": "g", "serviceName": "decode"}}


def test_worker_metadata_objects_are_stored_whole(
    control_plane: ControlPlane, namespace: str
) -> None:
    rest = control_plane.rest
    data = {"endpoints": {"dynamo/backend/generate/694d98": {"type": "Endpoint"}}, "x": None}
    dwm = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoWorkerMetadata",
        "metadata": {"name": "decode-0"},
        "spec": {"data": data},
    }
    created = rest.post(A1.format(ns=namespace, plural=DWMS), dwm)
    assert created["spec"]["data"] == data


# --- with the operator running -----------------------------------------------------------------


def runnable(name: str) -> dict[str, Any]:
    """Our aggregated vLLM graph (frontend + one worker) under `name`, runnable by the fake
    kubelet."""
    doc = load_graph("vllm-agg")
    doc["metadata"] = {"name": name}
    doc["spec"]["services"]["worker"]["replicas"] = 2
    return doc


def _ready_hub(rest: Any, namespace: str, name: str) -> dict[str, Any] | None:
    """The v1beta1 DGD once Ready for its generation (how the planner polls it), else None."""
    hub: dict[str, Any] = rest.get(f"{B1.format(ns=namespace, plural=DGDS)}/{name}")
    status = hub.get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    if (
        ready
        and ready[0]["status"] == "True"
        and status.get("observedGeneration") == hub["metadata"]["generation"]
    ):
        return hub
    return None


def test_the_planners_requests(control_plane: ControlPlane, namespace: str) -> None:
    """Exactly what Dynamo's planner sends (reference §7.2), against the v1beta1 API."""
    rest = control_plane.rest
    doc = runnable("planned")
    doc["spec"]["services"]["worker"]["scalingAdapter"] = {"enabled": True}
    dgd = f"{B1.format(ns=namespace, plural=DGDS)}/planned"
    with running_operator(namespace):
        rest.post(A1.format(ns=namespace, plural=DGDS), doc)
        hub = wait_for(lambda: _ready_hub(rest, namespace, "planned"), timeout=120,
                       description="v1beta1 DGD Ready")  # fmt: skip
        decode = hub["status"]["components"]["worker"]
        [name] = decode["componentNames"]  # the worker generation, planned-worker-<hash>
        deployment = rest.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        generation = labels["nvidia.com/dynamo-worker-hash"]
        assert decode["componentKind"] == "Deployment" and name == f"planned-worker-{generation}"
        assert decode["runtimeNamespace"] == f"{namespace}-planned-{generation}"
        assert labels["nvidia.com/dynamo-namespace"] == f"{namespace}-planned"
        assert (decode["replicas"], decode["updatedReplicas"]) == (2, 2)
        assert (decode["readyReplicas"], decode["availableReplicas"]) == (2, 2)

        # Scale a component with an adapter: merge patch of the v1beta1 adapter's /scale.
        scale = f"{B1.format(ns=namespace, plural=DGDSAS)}/planned-worker/scale"
        rest.patch(scale, {"spec": {"replicas": 3}})

        def decode_replicas() -> int | None:
            components = rest.get(dgd)["spec"]["components"]
            return next(c.get("replicas") for c in components if c["name"] == "worker")

        wait_for(lambda: decode_replicas() == 3, timeout=60, description="adapter -> DGD")

        # The fallback without an adapter: an RFC 6902 patch guarded by a test of the name.
        names = [c["name"] for c in rest.get(dgd)["spec"]["components"]]
        index = names.index("Frontend")
        patch = [
            {"op": "test", "path": f"/spec/components/{index}/name", "value": "Frontend"},
            {"op": "add", "path": f"/spec/components/{index}/replicas", "value": 2},
        ]
        rest.patch(dgd, patch, content_type="application/json-patch+json")
        stale = [{**patch[0], "value": "worker"}, patch[1]]
        with pytest.raises(ApiError) as info:  # a moved component is never scaled by mistake
            rest.patch(dgd, stale, content_type="application/json-patch+json")
        assert info.value.status == 422

        def settled_components() -> dict[str, Any] | None:
            ready = _ready_hub(rest, namespace, "planned")
            components = (ready or {}).get("status", {}).get("components", {})
            frontend, worker = components.get("Frontend", {}), components.get("worker", {})
            if frontend.get("availableReplicas") == 2 and worker.get("availableReplicas") == 3:
                return dict(components)
            return None

        components = wait_for(settled_components, timeout=120, description="scaled and Ready")
        assert components["worker"]["updatedReplicas"] == 3
        # v1alpha1 readers see the same status under `services`.
        spoke = rest.get(f"{A1.format(ns=namespace, plural=DGDS)}/planned")
        assert spoke["status"]["services"]["worker"]["componentNames"] == [name]
        assert spoke["spec"]["services"]["Frontend"]["replicas"] == 2


def _allowed(rest: Any, user: str, namespace: str, verb: str, resource: str, group: str) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
            "resourceAttributes": {
                "namespace": namespace, "verb": verb, "group": group, "resource": resource,
            },
        },
    }  # fmt: skip
    answer = rest.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    return bool(answer["status"].get("allowed"))


def test_worker_pods_may_publish_worker_metadata_and_nothing_more(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """Dynamo's runtime (Kubernetes discovery) writes its DWM with the pod's ServiceAccount."""
    rest = control_plane.rest
    with running_operator(namespace):
        rest.post(A1.format(ns=namespace, plural=DGDS), runnable("found"))
        wait_for(lambda: _ready_hub(rest, namespace, "found"), timeout=120,
                 description="v1beta1 DGD Ready")  # fmt: skip
    [deployment] = rest.get(
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        labelSelector="nvidia.com/dynamo-component=worker",
    )["items"]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert account == "found-k8s-service-discovery"
    user = f"system:serviceaccount:{namespace}:{account}"
    for verb in ("create", "get", "list", "watch", "update", "patch", "delete"):
        assert _allowed(rest, user, namespace, verb, DWMS, "nvidia.com"), verb
    for verb in ("get", "list", "watch"):
        assert _allowed(rest, user, namespace, verb, "endpointslices", "discovery.k8s.io")
        assert _allowed(rest, user, namespace, verb, "pods", "")
        assert _allowed(rest, user, namespace, verb, "endpoints", "")
    refused = [
        ("create", DWMS, "nvidia.com", "default"),  # another namespace
        ("deletecollection", DWMS, "nvidia.com", namespace),
        ("get", DGDS, "nvidia.com", namespace),
        ("patch", f"{DGDSAS}/scale", "nvidia.com", namespace),
        ("create", "pods", "", namespace),
        ("get", "secrets", "", namespace),
        ("update", "endpointslices", "discovery.k8s.io", namespace),
    ]
    for verb, resource, group, where in refused:
        assert not _allowed(rest, user, where, verb, resource, group), (verb, resource, where)
    # And for real, with its own token: it writes its DWM the way the runtime does (apply).
    token = rest.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )["status"]["token"]
    admin = yaml.safe_load(control_plane.kubeconfig.read_text())
    kubeconfig = tmp_path / "worker.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
                "users": [{"name": "worker", "user": {"token": token}}],
                "contexts": [{"name": "w", "context": {"cluster": "c", "user": "worker"}}],
                "current-context": "w",
            }
        )
    )
    worker = KubeRest.from_kubeconfig(kubeconfig)
    try:
        dwm = {
            "apiVersion": "nvidia.com/v1alpha1",
            "kind": "DynamoWorkerMetadata",
            "metadata": {"name": "found-decode-0", "namespace": namespace},
            "spec": {"data": {"endpoints": {}}},
        }
        path = f"{A1.format(ns=namespace, plural=DWMS)}/found-decode-0"
        worker.patch(path, dwm, content_type="application/apply-patch+yaml",
                     fieldManager="dynamo-worker", force=True)  # fmt: skip
        assert worker.get(path)["spec"]["data"] == {"endpoints": {}}
        with pytest.raises(ApiError) as info:
            worker.get(f"{A1.format(ns=namespace, plural=DGDS)}/found")
        assert info.value.status == 403
    finally:
        worker.close()


def test_with_the_webhook_down_the_error_names_it_at_once(
    control_plane: ControlPlane, namespace: str
) -> None:
    """Conversion is needed for every read at the other version: a dead webhook must fail fast
    with a message naming it, never hang."""
    rest = control_plane.rest
    adapter = {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeploymentScalingAdapter",
        "metadata": {"name": "down-decode"},
        "spec": {"replicas": 1, "dgdRef": {"name": "down", "componentName": "decode"}},
    }
    rest.post(B1.format(ns=namespace, plural=DGDSAS), adapter)
    crd_path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{DGDSAS}.nvidia.com"
    live = rest.get(crd_path)["spec"]["conversion"]["webhook"]["clientConfig"]
    dead = f"https://127.0.0.1:{free_port()}/convert"
    rest.patch(crd_path, {"spec": {"conversion": {"webhook": {"clientConfig": {"url": dead}}}}})
    try:

        def failure() -> str | None:
            try:
                rest.get(f"{A1.format(ns=namespace, plural=DGDSAS)}/down-decode")
            except ApiError as exc:
                return str(exc)
            return None  # the API server has not switched to the dead URL yet

        message = wait_for(failure, timeout=30, description="conversion through the dead URL")
        assert "conversion webhook for nvidia.com/v1beta1" in message
        assert dead in message
        # The storage version never needs the webhook.
        stored = rest.get(f"{B1.format(ns=namespace, plural=DGDSAS)}/down-decode")
        assert stored["spec"]["dgdRef"]["componentName"] == "decode"
    finally:
        rest.patch(crd_path, {"spec": {"conversion": {"webhook": {"clientConfig": live}}}})
        wait_for(
            lambda: rest.exists(f"{A1.format(ns=namespace, plural=DGDSAS)}/down-decode"),
            timeout=30,
            description="conversion restored",
        )


async def test_objects_stored_in_an_old_version_are_migrated_and_stored_versions_set(
    control_plane: ControlPlane, namespace: str
) -> None:
    """Taking over a cluster whose CRD still lists v1alpha1 in storedVersions (an older Dynamo):
    every object is rewritten in v1beta1, nothing is lost, then storedVersions is just v1beta1.
    A second pass finds nothing to do."""
    rest = control_plane.rest
    crd_path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{DGDSAS}.nvidia.com"
    adapter = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeploymentScalingAdapter",
        "metadata": {"name": "old-decode"},
        "spec": {"replicas": 4, "dgdRef": {"name": "old", "serviceName": "decode"}},
    }
    rest.post(A1.format(ns=namespace, plural=DGDSAS), adapter)
    legacy = {"status": {"storedVersions": ["v1alpha1", "v1beta1"]}}
    rest.patch(f"{crd_path}/status", legacy)
    client = connect()
    try:
        rewritten = await migrate_stored_versions(client, [f"{DGDSAS}.nvidia.com"])
        assert rewritten >= 1
        assert rest.get(crd_path)["status"]["storedVersions"] == ["v1beta1"]
        assert await migrate_stored_versions(client, [f"{DGDSAS}.nvidia.com"]) == 0
    finally:
        await client.close()
    kept = rest.get(f"{B1.format(ns=namespace, plural=DGDSAS)}/old-decode")
    assert kept["spec"] == {"replicas": 4, "dgdRef": {"name": "old", "componentName": "decode"}}
