"""The local control plane against the real API server: CRDs, schema, controllers, scheduler and
the simulated GPU nodes (fake kubelet), including failure injection."""

from __future__ import annotations

import copy
import dataclasses
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tests import peer_corpus
from tests.fixtures.catalog import dgd_documents, graph_paths
from tests.fixtures.dgd import DGD
from tests.helpers import KubeApi, pruned_fields, wait_for, yaml_documents

from dgd_operator.dev.binaries import KubeBinaries
from dgd_operator.dev.controlplane import ControlPlane
from dgd_operator.dev.kubelet import GPU_RESOURCE, SIMULATE_ANNOTATION
from dgd_operator.dev.rest import ApiError, JsonDict

pytestmark = pytest.mark.integration

DGD_PATH = "/apis/nvidia.com/v1alpha1/namespaces/{ns}/dynamographdeployments"


def _example_dgds() -> list[Any]:
    """Our own graphs, then Dynamo's v1alpha1 examples (peer corpus)."""
    params = [
        pytest.param(doc, id=f"{path.stem}:{doc['metadata']['name']}")
        for path in graph_paths()
        for doc in dgd_documents(path)
    ]
    if not peer_corpus.present():
        return [*params, *peer_corpus.cases([])]
    for path in peer_corpus.v1alpha1_example_paths():
        for doc in dgd_documents(path):
            doc_id = f"{path.stem}:{doc['metadata']['name']}"
            params.append(pytest.param(doc, id=doc_id, marks=peer_corpus.peer_corpus))
    return params


def _pod(name: str, *, gpus: int = 0, **spec_extra: Any) -> JsonDict:
    container: JsonDict = {"name": "main", "image": "example.com/app:1"}
    if gpus:
        container["resources"] = {"limits": {GPU_RESOURCE: str(gpus)}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [container], **spec_extra},
    }


def _create_pod(control_plane: ControlPlane, namespace: str, pod: JsonDict) -> JsonDict:
    return control_plane.rest.post(f"/api/v1/namespaces/{namespace}/pods", pod)


def _get_pod(control_plane: ControlPlane, namespace: str, name: str) -> JsonDict:
    return control_plane.rest.get(f"/api/v1/namespaces/{namespace}/pods/{name}")


def _condition(obj: JsonDict, kind: str) -> str | None:
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == kind:
            return str(cond.get("status"))
    return None


def _pod_if(
    control_plane: ControlPlane, namespace: str, name: str, condition: str
) -> JsonDict | None:
    """The pod if its ``condition`` is True, else None (a wait_for predicate)."""
    pod = _get_pod(control_plane, namespace, name)
    return pod if _condition(pod, condition) == "True" else None


def _wait_pod_ready(control_plane: ControlPlane, namespace: str, name: str) -> JsonDict:
    return wait_for(
        lambda: _pod_if(control_plane, namespace, name, "Ready"),
        timeout=30,
        description=f"pod {namespace}/{name} Ready",
    )


# -- cluster shape ---------------------------------------------------------------------------


def test_simulated_gpu_nodes_are_ready_and_advertise_gpus(control_plane: ControlPlane) -> None:
    nodes = {n["metadata"]["name"]: n for n in control_plane.rest.get("/api/v1/nodes")["items"]}
    assert set(control_plane.node_names) <= set(nodes)
    for name in control_plane.node_names:
        status = nodes[name]["status"]
        assert status["allocatable"][GPU_RESOURCE] == str(control_plane.gpus_per_node)
        assert _condition(nodes[name], "Ready") == "True"
        assert not nodes[name]["spec"].get("taints"), "no not-ready taint may be left on our nodes"


def test_crds_are_installed_and_established(control_plane: ControlPlane, repo_root: Path) -> None:
    files = sorted((repo_root / "crds").glob("*.yaml"))
    assert files, "crds/ holds no CRD: regenerate with `make crds`"
    expected = {
        doc["metadata"]["name"]
        for f in files
        for doc in yaml_documents(f)
        if doc.get("kind") == "CustomResourceDefinition"
    }
    for name in expected:
        crd = control_plane.rest.get(
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        )
        assert _condition(crd, "Established") == "True", name
        assert _condition(crd, "NonStructuralSchema") in (None, "False"), name


# -- our CRD schema against Dynamo's YAML ----------------------------------------------------


@pytest.mark.parametrize("dgd", _example_dgds())
def test_example_dgd_is_accepted_by_server_side_dry_run(
    control_plane: ControlPlane, namespace: str, dgd: JsonDict
) -> None:
    body = copy.deepcopy(dgd)
    body["metadata"].pop("namespace", None)
    try:
        created = control_plane.rest.post(DGD_PATH.format(ns=namespace), body, dryRun="All")
    except ApiError as exc:
        pytest.fail(f"server rejected {dgd['metadata']['name']}: {exc.body}")
    # The server may prune only what `dgd validate` warns it will prune (the obsolete per-service
    # `pvc:` block of early Dynamo YAML, dropped by Dynamo's own late CRD too); anything else it
    # dropped would be silently lost configuration.
    from dgd_operator.api.validation import validate_dgd

    warned = {
        problem.path
        for problem in validate_dgd(copy.deepcopy(dgd)).warnings
        if "prune" in problem.message
    }
    assert set(pruned_fields(body["spec"], created["spec"], "spec")) == warned


def test_unknown_fields_are_pruned_and_reported(
    control_plane: ControlPlane, namespace: str
) -> None:
    dgd: JsonDict = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": "unknown-fields"},
        "spec": {
            "notARealField": 1,
            "services": {
                "Frontend": {"componentType": "frontend", "replicas": 1, "bogusKnob": "x"},
            },
        },
    }
    status, created, warnings = control_plane.rest.request_full(
        "POST",
        DGD_PATH.format(ns=namespace),
        dgd,
        params={"dryRun": "All", "fieldValidation": "Warn"},
    )
    assert status == 201
    pruned = pruned_fields(dgd["spec"], created["spec"], "spec")
    assert sorted(pruned) == ["spec.notARealField", "spec.services.Frontend.bogusKnob"]
    warning_text = "\n".join(warnings)
    assert 'unknown field "spec.notARealField"' in warning_text
    assert 'unknown field "spec.services.Frontend.bogusKnob"' in warning_text
    # fieldValidation=Strict turns the same into a clear error naming the field.
    with pytest.raises(ApiError) as excinfo:
        control_plane.rest.post(
            DGD_PATH.format(ns=namespace), dgd, dryRun="All", fieldValidation="Strict"
        )
    assert excinfo.value.status == 400
    assert "spec.notARealField" in str(excinfo.value)


# -- controllers, scheduler and the fake kubelet -----------------------------------------------


def test_deployment_becomes_available_on_gpu_nodes(
    control_plane: ControlPlane, namespace: str, kube_api: KubeApi
) -> None:
    labels = {"app": "gpu-web"}
    kube_api.apps.create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "gpu-web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "initContainers": [{"name": "setup", "image": "example.com/setup:1"}],
                        "containers": [
                            {
                                "name": "worker",
                                "image": "example.com/worker:1",
                                "resources": {"limits": {GPU_RESOURCE: "2"}},
                            }
                        ],
                    },
                },
            },
        },
    )
    wait_for(
        lambda: (
            (
                kube_api.apps.read_namespaced_deployment_status(
                    "gpu-web", namespace
                ).status.available_replicas
                or 0
            )
            == 3
        ),
        timeout=60,
        description="deployment gpu-web availableReplicas == 3",
    )
    pods = control_plane.rest.get(
        f"/api/v1/namespaces/{namespace}/pods", labelSelector="app=gpu-web"
    )["items"]
    assert len(pods) == 3
    ips = set()
    for pod in pods:
        status = pod["status"]
        assert pod["spec"]["nodeName"] in control_plane.node_names
        assert status["phase"] == "Running"
        assert status["hostIP"] and status["podIP"]
        ips.add(status["podIP"])
        assert status["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
        assert status["containerStatuses"][0]["restartCount"] == 0
        assert status["containerStatuses"][0]["state"].get("running")
    assert len(ips) == 3, f"pod IPs must be unique: {ips}"


def test_deleting_an_owner_garbage_collects_its_children(
    control_plane: ControlPlane, namespace: str
) -> None:
    rest = control_plane.rest
    owner = rest.post(f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "owner"}})
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    rest.post(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"metadata": {"name": "child", "ownerReferences": [ref]}, "data": {"k": "v"}},
    )
    pod = _pod("child-pod")
    pod["metadata"]["ownerReferences"] = [ref]
    _create_pod(control_plane, namespace, pod)
    _wait_pod_ready(control_plane, namespace, "child-pod")
    rest.delete(f"/api/v1/namespaces/{namespace}/configmaps/owner", propagationPolicy="Background")
    wait_for(
        lambda: (
            not control_plane.rest_exists(f"/api/v1/namespaces/{namespace}/configmaps/child")
            and not control_plane.rest_exists(f"/api/v1/namespaces/{namespace}/pods/child-pod")
        ),
        timeout=60,
        description="the garbage collector to delete the ConfigMap and the Pod owned by 'owner'",
    )


def test_pod_asking_for_more_gpus_than_any_node_stays_pending(
    control_plane: ControlPlane, namespace: str
) -> None:
    too_many = control_plane.gpus_per_node + 1
    _create_pod(control_plane, namespace, _pod("greedy", gpus=too_many))

    def unschedulable() -> JsonDict | None:
        pod = _get_pod(control_plane, namespace, "greedy")
        for cond in pod.get("status", {}).get("conditions", []) or []:
            if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return pod
        return None

    pod = wait_for(unschedulable, timeout=30, description="PodScheduled=False/Unschedulable")
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")
    message = next(c["message"] for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert GPU_RESOURCE in message


def test_statefulset_with_start_ordinal_gets_pod_index_labels(
    control_plane: ControlPlane, namespace: str
) -> None:
    rest = control_plane.rest
    labels = {"app": "wkr"}
    rest.post(
        f"/api/v1/namespaces/{namespace}/services",
        {
            "metadata": {"name": "wkr"},
            "spec": {"clusterIP": "None", "selector": labels, "publishNotReadyAddresses": True},
        },
    )
    rest.post(
        f"/apis/apps/v1/namespaces/{namespace}/statefulsets",
        {
            "metadata": {"name": "wkr"},
            "spec": {
                "serviceName": "wkr",
                "replicas": 3,
                "ordinals": {"start": 1},
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "main", "image": "example.com/w:1"}]},
                },
            },
        },
    )
    wait_for(
        lambda: (
            rest.get(f"/apis/apps/v1/namespaces/{namespace}/statefulsets/wkr")
            .get("status", {})
            .get("readyReplicas")
            == 3
        ),
        timeout=60,
        description="statefulset wkr readyReplicas == 3",
    )
    pods = rest.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector="app=wkr")["items"]
    indexes = {
        p["metadata"]["name"]: p["metadata"]["labels"].get("apps.kubernetes.io/pod-index")
        for p in pods
    }
    assert indexes == {"wkr-1": "1", "wkr-2": "2", "wkr-3": "3"}


def test_deleted_pods_are_finalised(control_plane: ControlPlane, namespace: str) -> None:
    _create_pod(control_plane, namespace, _pod("short-lived", terminationGracePeriodSeconds=600))
    _wait_pod_ready(control_plane, namespace, "short-lived")
    control_plane.rest.delete(f"/api/v1/namespaces/{namespace}/pods/short-lived")
    wait_for(
        lambda: not control_plane.rest_exists(f"/api/v1/namespaces/{namespace}/pods/short-lived"),
        timeout=30,
        description="the fake kubelet to finalise the deleted pod (despite a 600 s grace period)",
    )


def test_readiness_gates_hold_ready_until_their_condition_is_true(
    control_plane: ControlPlane, namespace: str
) -> None:
    gate = "example.com/warmed-up"
    _create_pod(control_plane, namespace, _pod("gated", readinessGates=[{"conditionType": gate}]))
    pod = wait_for(
        lambda: _pod_if(control_plane, namespace, "gated", "ContainersReady"),
        timeout=30,
        description="gated pod containers ready",
    )
    assert _condition(pod, "Ready") == "False"
    control_plane.rest.patch(
        f"/api/v1/namespaces/{namespace}/pods/gated/status",
        {"status": {"conditions": [{"type": gate, "status": "True"}]}},
        content_type="application/strategic-merge-patch+json",
    )
    _wait_pod_ready(control_plane, namespace, "gated")


def test_fail_pod_marks_it_failed(control_plane: ControlPlane, namespace: str) -> None:
    _create_pod(control_plane, namespace, _pod("doomed"))
    _wait_pod_ready(control_plane, namespace, "doomed")
    pod = control_plane.fail_pod(namespace, "doomed", reason="OOMKilled")
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled"
    assert terminated["exitCode"] == 1
    assert _condition(pod, "Ready") == "False"


def test_restart_container_bumps_restart_count_then_ready_again(
    control_plane: ControlPlane, namespace: str
) -> None:
    _create_pod(control_plane, namespace, _pod("flaky"))
    _wait_pod_ready(control_plane, namespace, "flaky")
    pod = control_plane.restart_container(namespace, "flaky")
    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 137
    pod = _wait_pod_ready(control_plane, namespace, "flaky")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 1


def test_crashloop_annotation_makes_pods_crash_loop(
    control_plane: ControlPlane, namespace: str
) -> None:
    pod = _pod("crasher")
    pod["metadata"]["annotations"] = {SIMULATE_ANNOTATION: "crashloop"}
    _create_pod(control_plane, namespace, pod)

    def restarted_twice() -> JsonDict | None:
        current = _get_pod(control_plane, namespace, "crasher")
        statuses = current.get("status", {}).get("containerStatuses") or [{}]
        return current if statuses[0].get("restartCount", 0) >= 2 else None

    current = wait_for(restarted_twice, timeout=30, description="crasher restartCount >= 2")
    assert current["status"]["phase"] == "Running"
    assert _condition(current, "Ready") == "False"
    assert current["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 1


def test_gpu_capacity_is_respected_across_nodes(
    control_plane: ControlPlane, namespace: str
) -> None:
    # Two pods that each need more than half a node's GPUs cannot share a node.
    gpus = control_plane.gpus_per_node // 2 + 1
    for name in ("big-a", "big-b"):
        _create_pod(control_plane, namespace, _pod(name, gpus=gpus))
    a = _wait_pod_ready(control_plane, namespace, "big-a")
    b = _wait_pod_ready(control_plane, namespace, "big-b")
    assert a["spec"]["nodeName"] != b["spec"]["nodeName"]
    assert a["status"]["podIP"] != b["status"]["podIP"]


def test_deleting_a_dgd_garbage_collects_what_it_owns(
    control_plane: ControlPlane, namespace: str
) -> None:
    # The operator relies on this: children carry an ownerReference to the DGD (a custom
    # resource), and the garbage collector removes them when the DGD goes.
    rest = control_plane.rest
    dgd = rest.post(DGD_PATH.format(ns=namespace), DGD("owner-graph").frontend().build())
    ref = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "name": "owner-graph",
        "uid": dgd["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    rest.post(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"metadata": {"name": "graph-child", "ownerReferences": [ref]}},
    )
    rest.delete(f"{DGD_PATH.format(ns=namespace)}/owner-graph", propagationPolicy="Background")
    wait_for(
        lambda: (
            not control_plane.rest_exists(f"/api/v1/namespaces/{namespace}/configmaps/graph-child")
        ),
        timeout=90,
        description="the garbage collector to delete the ConfigMap owned by the deleted DGD",
    )


def _pod_in_phase(
    control_plane: ControlPlane, namespace: str, name: str, phase: str
) -> JsonDict | None:
    """The pod if it is in ``phase``, else None (a wait_for predicate)."""
    pod = _get_pod(control_plane, namespace, name)
    return pod if pod.get("status", {}).get("phase") == phase else None


def test_simulate_unready_and_succeed_annotations(
    control_plane: ControlPlane, namespace: str
) -> None:
    unready = _pod("never-ready")
    unready["metadata"]["annotations"] = {SIMULATE_ANNOTATION: "unready"}
    done = _pod("one-shot", restartPolicy="Never")
    done["metadata"]["annotations"] = {SIMULATE_ANNOTATION: "succeed"}
    _create_pod(control_plane, namespace, unready)
    _create_pod(control_plane, namespace, done)
    finished = wait_for(
        lambda: _pod_in_phase(control_plane, namespace, "one-shot", "Succeeded"),
        timeout=30,
        description="one-shot phase Succeeded",
    )
    assert finished["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    running = wait_for(
        lambda: _pod_in_phase(control_plane, namespace, "never-ready", "Running"),
        timeout=30,
        description="never-ready phase Running",
    )
    assert _condition(running, "Ready") == "False"
    assert running["status"]["containerStatuses"][0]["ready"] is False


def test_profiling_serves_pprof_of_the_api_server_and_controller_manager(
    kube_binaries: KubeBinaries, control_plane: ControlPlane, tmp_path: Path
) -> None:
    # The shared cluster is started without profiling: its API server has no /debug/pprof.
    with pytest.raises(ApiError) as off:
        control_plane.rest.get("/debug/pprof/")
    assert off.value.status == 404
    assert control_plane.controller_manager_url is None
    bins = dataclasses.replace(kube_binaries, scheduler=None)
    plane = ControlPlane(
        tmp_path / "profiled", binaries=bins, kubelet="none", crds=False, nodes=0, profiling=True
    )
    try:
        plane.start()
        # The index of profiles (the cheapest pprof page): served only when profiling is on.
        assert "goroutine" in str(plane.rest.get("/debug/pprof/"))
        assert plane.controller_manager_url is not None
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        url = f"{plane.controller_manager_url}/debug/pprof/"
        with urllib.request.urlopen(url, context=insecure, timeout=10) as answer:
            assert b"goroutine" in answer.read()  # no credentials needed
    finally:
        leftovers = plane.stop()
        plane.remove_data()
    assert not leftovers
