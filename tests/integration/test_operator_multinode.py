"""Multinode services on the real control plane: our multinode graphs (and, as a peer check,
Dynamo's multinode examples and DeepSeek-R1 recipes) become leader/worker StatefulSet groups with ranks, leader DNS and injected flags;
a failed rank restarts its whole group exactly once; a crash-looping group spends its restart
budget and the DGD reports `failed` naming the group."""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests import peer_corpus
from tests.fixtures.catalog import dgd_documents, graph_path
from tests.helpers import wait_for, wait_reconciled_after
from tests.integration.operator_harness import dgd_path, events_for, running_operator, settled

from dgd_operator.dev.controlplane import ControlPlane
from dgd_operator.dev.rest import ApiError

pytestmark = pytest.mark.integration

POD_INDEX = "apps.kubernetes.io/pod-index"
Doc = dict[str, Any]


def _dgd(path: Path) -> Doc:
    docs = dgd_documents(path)
    assert len(docs) == 1, path
    return copy.deepcopy(docs[0])


def _without_rdma(doc: Doc) -> None:
    """The simulated nodes advertise GPUs but no `rdma/ib` devices."""
    for service in doc["spec"]["services"].values():
        for part in ("requests", "limits"):
            (service.get("resources") or {}).get(part, {}).pop("custom", None)


def _fit_gb200(doc: Doc) -> None:
    """GB200 recipe on 4 simulated nodes x 8 GPUs: 130 CPUs/850Gi per pod and a DRA compute
    domain do not exist here, and 8 decode nodes x 4 GPUs + 4 prefill GPUs = 36 > 32 GPUs:
    decode runs 7 nodes (28 GPUs), resources shrink to 4 CPUs/16Gi, the DRA claim is dropped."""
    for service in doc["spec"]["services"].values():
        resources = service.get("resources")
        if resources:
            for part in ("requests", "limits"):
                if part in resources:
                    resources[part].update(cpu="4", memory="16Gi")
            resources.pop("claims", None)
        (service.get("extraPodSpec") or {}).pop("resourceClaims", None)
    doc["spec"]["services"]["decode"]["multinode"]["nodeCount"] = 7


# name -> (graph file, adjustment of the test copy, backend); `dynamo-*` are the peer corpus.
EXAMPLES: dict[str, tuple[Path, Callable[[Doc], None] | None, str]] = {
    "vllm": (graph_path("vllm-multinode-ray"), None, "vllm"),
    "vllm-mp": (graph_path("vllm-multinode-mp"), None, "vllm"),
    "vllm-dp": (graph_path("vllm-dp"), None, "vllm"),
    "sglang": (graph_path("sglang-multinode"), None, "sglang"),
    "trtllm": (graph_path("trtllm-multinode"), None, "trtllm"),
    "dynamo-vllm": (
        peer_corpus.example("examples__backends__vllm__deploy__disagg-multinode.yaml"),
        None,
        "vllm",
    ),
    "dynamo-sglang": (
        peer_corpus.example("examples__backends__sglang__deploy__disagg-multinode.yaml"),
        None,
        "sglang",
    ),
    "dynamo-trtllm": (
        peer_corpus.example("examples__backends__trtllm__deploy__disagg-multinode.yaml"),
        None,
        "trtllm",
    ),
    "dynamo-dsr1-vllm": (
        peer_corpus.example("recipes__deepseek-r1__vllm__disagg__deploy_hopper_16gpu.yaml"),
        _without_rdma,
        "vllm",
    ),
    "dynamo-dsr1-trtllm-gb200": (
        peer_corpus.example("recipes__deepseek-r1__trtllm__disagg__wide_ep__gb200__deploy.yaml"),
        _fit_gb200,
        "trtllm",
    ),
}


def _pods(rest: Any, ns: str, selector: str) -> list[Doc]:
    return list(rest.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=selector).get("items", []))


def _group_pods(rest: Any, ns: str, dgd: str, service: str, group: int) -> list[Doc]:
    selector = f"nvidia.com/dynamo-graph-deployment-name={dgd},nvidia.com/dynamo-component={service},instance-id={group}"
    return [p for p in _pods(rest, ns, selector) if not p["metadata"].get("deletionTimestamp")]


def _env(pod: Doc) -> dict[str, Any]:
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def _main_line(pod: Doc) -> str:
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
    return " ".join([*(container.get("command") or []), *(container.get("args") or [])])


def _create_volumes(rest: Any, ns: str, doc: Doc) -> None:
    """Bound PV/PVC pairs for every PVC the DGD references but does not create (`create:
    false`): the scheduler refuses pods with unbound claims, and the test control plane runs
    no volume binder, so the binding is made by hand."""
    names = {p["name"] for p in doc["spec"].get("pvcs") or [] if not p.get("create")}
    for service in doc["spec"]["services"].values():
        names |= {m["name"] for m in service.get("volumeMounts") or []}
    for name in sorted(names):
        pv = f"{ns}-{name}"[:63]
        rest.post(
            "/api/v1/persistentvolumes",
            {
                "metadata": {"name": pv, "labels": {"dgd.dev/test": "true"}},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteMany"],
                    "hostPath": {"path": f"/tmp/{pv}"},
                    "storageClassName": "",
                    "claimRef": {"namespace": ns, "name": name},
                },
            },
        )
        rest.post(
            f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
            {
                "metadata": {
                    "name": name,
                    "annotations": {"pv.kubernetes.io/bind-completed": "yes"},
                },
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "resources": {"requests": {"storage": "1Gi"}},
                    "storageClassName": "",
                    "volumeName": pv,
                },
            },
        )
        rest.patch(
            f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}/status",
            {
                "status": {
                    "phase": "Bound",
                    "accessModes": ["ReadWriteMany"],
                    "capacity": {"storage": "1Gi"},
                }
            },
        )
        # The protection finalizers are removed by controllers this control plane does not run;
        # without this the namespace would never finish terminating.
        for path in (
            f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}",
            f"/api/v1/persistentvolumes/{pv}",
        ):
            rest.patch(path, {"metadata": {"finalizers": None}})


def _cleanup(rest: Any, ns: str, name: str) -> None:
    """Delete the DGD and wait for its pods to go, so the next test gets the GPUs."""
    try:
        rest.delete(dgd_path(ns, name), propagationPolicy="Foreground")
    except ApiError as exc:
        if exc.status != 404:
            raise
    selector = f"nvidia.com/dynamo-graph-deployment-name={name}"
    wait_for(lambda: not _pods(rest, ns, selector), timeout=60, description=f"pods of {name} gone")
    for pv in rest.get("/api/v1/persistentvolumes", labelSelector="dgd.dev/test=true").get(
        "items", []
    ):
        if pv["metadata"]["name"].startswith(f"{ns}-"):
            rest.delete(f"/api/v1/persistentvolumes/{pv['metadata']['name']}")


@pytest.fixture()
def short_namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace with a short name: `<namespace>-<dgd>` becomes the label value
    `nvidia.com/dynamo-namespace` (at most 63 characters), and the recipes' DGD names are long."""
    rest = control_plane.rest
    name = f"mn-{uuid.uuid4().hex[:6]}"
    rest.post(
        "/api/v1/namespaces", {"metadata": {"name": name, "labels": {"dgd.dev/test": "true"}}}
    )
    wait_for(
        lambda: control_plane.rest_exists(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        timeout=30,
        description=f"ServiceAccount {name}/default",
    )
    yield name
    rest.delete(f"/api/v1/namespaces/{name}", propagationPolicy="Background")


def _successful(rest: Any, ns: str, name: str) -> Doc | None:
    obj = settled(rest, ns, name)
    failed = settled(rest, ns, name, "failed")
    if failed is not None:
        pytest.fail(f"{name} failed: {failed['status'].get('conditions')}")
    return obj


class Deployer:
    """``deployed(doc)`` posts a DGD and waits until successful; ``controller`` is the operator's."""

    def __init__(self, deploy: Callable[[Doc], Doc], controller: Any) -> None:
        self.deploy = deploy
        self.controller = controller

    def __call__(self, doc: Doc) -> Doc:
        return self.deploy(doc)


@pytest.fixture()
def deployed(control_plane: ControlPlane, short_namespace: str) -> Iterator[Deployer]:
    """Post a DGD under a running operator and wait until it is successful; clean up after."""
    rest = control_plane.rest
    namespace = short_namespace
    posted: list[str] = []
    with running_operator(namespace) as operator:

        def deploy(doc: Doc) -> Doc:
            _create_volumes(rest, namespace, doc)
            rest.post(dgd_path(namespace), doc)
            posted.append(doc["metadata"]["name"])
            return dict(
                wait_for(
                    lambda: _successful(rest, namespace, doc["metadata"]["name"]),
                    timeout=120,
                    interval=0.5,
                    description=f"{doc['metadata']['name']} successful",
                )
            )

        try:
            yield Deployer(deploy, operator.controller)
        finally:
            for name in posted:
                _cleanup(rest, namespace, name)


@pytest.mark.parametrize(
    "example",
    [
        pytest.param(k, marks=peer_corpus.peer_corpus) if k.startswith("dynamo-") else k
        for k in sorted(EXAMPLES)
    ],
)
def test_multinode_example(
    control_plane: ControlPlane, short_namespace: str, deployed: Callable[[Doc], Doc], example: str
) -> None:
    """Each group: N pods with ranks 0..N-1, the leader named by DNS under the headless
    `-nodes` Service, backend flags injected; status lists StatefulSets and Running groups."""
    rest = control_plane.rest
    namespace = short_namespace
    file, adjust, backend = EXAMPLES[example]
    doc = _dgd(file)
    if adjust is not None:
        adjust(doc)
    name = doc["metadata"]["name"]
    obj = deployed(doc)
    status = obj["status"]
    ready = next(cond for cond in status["conditions"] if cond["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "all_resources_are_ready")
    multinode = {
        s: spec
        for s, spec in doc["spec"]["services"].items()
        if (spec.get("multinode") or {}).get("nodeCount", 1) > 1
    }
    assert multinode, example
    for svc, spec in multinode.items():
        nodes = spec["multinode"]["nodeCount"]
        replicas = spec.get("replicas", 1)
        base = f"{name}-{svc.lower()}"
        counts = status["services"][svc]
        assert counts["componentKind"] == "StatefulSet"
        assert counts["componentNames"] == sorted(
            f"{base}-{g}-{role}" for g in range(replicas) for role in ("ldr", "wkr")
        )
        assert counts["readyReplicas"] == replicas
        assert [(g["index"], g["phase"], g["restarts"]) for g in counts["groups"]] == [
            (g, "Running", 0) for g in range(replicas)
        ]

        nodes_service = rest.get(f"/api/v1/namespaces/{namespace}/services/{base}-nodes")
        assert nodes_service["spec"]["clusterIP"] == "None"
        assert nodes_service["spec"]["publishNotReadyAddresses"] is True
        for group in range(replicas):
            pods = {
                p["metadata"]["name"]: p for p in _group_pods(rest, namespace, name, svc, group)
            }
            leader = f"{base}-{group}-ldr-0"
            assert set(pods) == {leader} | {f"{base}-{group}-wkr-{i}" for i in range(1, nodes)}, (
                sorted(pods)
            )
            assert sorted(int(p["metadata"]["labels"][POD_INDEX]) for p in pods.values()) == list(
                range(nodes)
            )
            address = f"{leader}.{base}-nodes"
            for pod_name, pod in pods.items():
                env = _env(pod)
                assert env["DGD_LEADER_ADDRESS"] == address
                assert env["DGD_NODE_COUNT"] == str(nodes)
                assert env["DGD_GROUP_INDEX"] == str(group)
                if pod_name == leader:
                    assert env["DGD_NODE_RANK"] == "0"
                else:
                    assert env["DGD_NODE_RANK"] == {
                        "fieldRef": {
                            "apiVersion": "v1",
                            "fieldPath": f"metadata.labels['{POD_INDEX}']",
                        }
                    }
                # The leader's DNS name: the pod's hostname under the governing headless Service.
                assert pod["spec"]["subdomain"] == f"{base}-nodes"
                assert pod["spec"]["hostname"] == pod_name
                assert pod["status"]["phase"] == "Running"
            leader_line = _main_line(pods[leader])
            worker_line = _main_line(pods[f"{base}-{group}-wkr-1"])
            if backend == "vllm" and "--distributed-executor-backend mp" in leader_line:
                assert f"--nnodes {nodes} --master-addr $(DGD_LEADER_ADDRESS)" in leader_line
                assert "--node-rank 0" in leader_line and "ray start" not in leader_line
                assert "--node-rank $(DGD_NODE_RANK) --headless" in worker_line
            elif backend == "vllm" and "--data-parallel-size-local" not in leader_line:
                assert (
                    "ray start --head" in leader_line
                    and "--distributed-executor-backend ray" in leader_line
                )
                assert "ray start --address=$(DGD_LEADER_ADDRESS):6379" in worker_line
            elif backend == "vllm":
                assert "--data-parallel-address $(DGD_LEADER_ADDRESS)" in leader_line
                assert "--data-parallel-start-rank 0" in leader_line
                assert "--data-parallel-start-rank $(( 8 * ${DGD_NODE_RANK} ))" in worker_line
            elif backend == "sglang":
                assert "--dist-init-addr $(DGD_LEADER_ADDRESS):29500" in leader_line
                assert f"--nnodes {nodes}" in leader_line and "--node-rank 0" in leader_line
                assert "--node-rank $(DGD_NODE_RANK)" in worker_line
            else:
                assert (
                    "mpirun" in leader_line and f"{base}-{group}-wkr-1.{base}-nodes" in leader_line
                )
                assert "sshd" in worker_line
                volumes = {v["name"]: v for v in pods[leader]["spec"]["volumes"]}
                assert volumes["mpi-run-ssh-secret"]["secret"]["secretName"] == "mpi-run-ssh-secret"
    if backend == "trtllm":
        import base64

        secret = rest.get(f"/api/v1/namespaces/{namespace}/secrets/mpi-run-ssh-secret")
        assert not secret["metadata"].get("ownerReferences")
        private = base64.b64decode(secret["data"]["private.key"]).decode()
        public = base64.b64decode(secret["data"]["private.key.pub"]).decode()
        assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
        assert public.startswith("ssh-rsa ")


@pytest.mark.parametrize(
    "file",
    [
        pytest.param(peer_corpus.example(file), marks=peer_corpus.peer_corpus, id=file)
        for file in (
            "recipes__deepseek-r1__sglang-wideep__tep8p-dep8d-disagg.yaml",
            "recipes__deepseek-r1__sglang__disagg-16gpu__deploy.yaml",
        )
    ],
)
def test_single_node_recipe_with_existing_pvc(
    control_plane: ControlPlane, short_namespace: str, deployed: Callable[[Doc], Doc], file: Path
) -> None:
    """The other DeepSeek-R1 recipes (8-GPU single-node workers): `volumeMounts` of a PVC the
    DGD does not create are mounted once the claim exists; the obsolete per-service `pvc:` block
    (wide-EP recipe) is pruned by the CRD schema, as with Dynamo, so nothing is mounted."""
    rest = control_plane.rest
    doc = _dgd(file)
    name = doc["metadata"]["name"]
    status = deployed(doc)["status"]
    for svc, spec in doc["spec"]["services"].items():
        counts = status["services"][svc]
        assert counts["componentKind"] == "Deployment" and counts["readyReplicas"] == spec.get(
            "replicas", 1
        )
        [workload] = counts["componentNames"]  # workers: `<name>-<svc>-<worker hash>`
        assert workload.startswith(f"{name}-{svc.lower()}")
        deployment = rest.get(f"/apis/apps/v1/namespaces/{short_namespace}/deployments/{workload}")
        claims = {
            v["persistentVolumeClaim"]["claimName"]
            for v in deployment["spec"]["template"]["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        }
        assert claims == {m["name"] for m in spec.get("volumeMounts") or []}, svc


def _touch(rest: Any, ns: str, pod: str) -> None:
    """A pod watch event the operator has nothing to do about: a fresh test annotation."""
    rest.patch(
        f"/api/v1/namespaces/{ns}/pods/{pod}",
        {"metadata": {"annotations": {"dgd.dev/touched": uuid.uuid4().hex}}},
    )


def _group_status(rest: Any, ns: str, name: str, svc: str, group: int = 0) -> Doc:
    obj = rest.get(dgd_path(ns, name))
    groups = ((obj.get("status") or {}).get("services") or {}).get(svc, {}).get("groups") or []
    return dict(next((g for g in groups if g["index"] == group), {}))


def test_deleted_rank_restarts_the_whole_group_once(
    control_plane: ControlPlane, short_namespace: str, deployed: Deployer
) -> None:
    """Deleting one worker pod of a Ready group recreates every pod of that group exactly
    once (new uids, ranks intact); the other service's group is left alone."""
    rest = control_plane.rest
    namespace = short_namespace
    doc = _dgd(EXAMPLES["vllm"][0])
    doc["spec"]["services"]["decode"]["multinode"]["nodeCount"] = 3
    name = doc["metadata"]["name"]
    deployed(doc)
    wait_for(
        lambda: _group_status(rest, namespace, name, "decode").get("phase") == "Running",
        timeout=30,
        description="decode group Running",
    )
    before = {
        p["metadata"]["name"]: p["metadata"]["uid"]
        for p in _group_pods(rest, namespace, name, "decode", 0)
    }
    prefill_before = {
        p["metadata"]["uid"] for p in _group_pods(rest, namespace, name, "prefill", 0)
    }
    assert len(before) == 3

    rest.delete(f"/api/v1/namespaces/{namespace}/pods/{name}-decode-0-wkr-2")

    def recovered() -> Doc | None:
        group = _group_status(rest, namespace, name, "decode")
        pods = _group_pods(rest, namespace, name, "decode", 0)
        fresh = {p["metadata"]["uid"] for p in pods} & set(before.values()) == set()
        ok = (
            group.get("phase") == "Running"
            and len(pods) == 3
            and fresh
            and settled(rest, namespace, name)
        )
        return group if ok else None

    group = wait_for(
        recovered, timeout=90, interval=0.3, description="decode group restarted and Running"
    )
    assert group["restarts"] == 1
    assert group["lastRestartReason"].startswith(f"pod {name}-decode-0-wkr-2 deleted")
    after = {p["metadata"]["name"]: p for p in _group_pods(rest, namespace, name, "decode", 0)}
    assert set(after) == set(before)
    assert all(after[n]["metadata"]["uid"] != uid for n, uid in before.items())
    assert sorted(int(p["metadata"]["labels"][POD_INDEX]) for p in after.values()) == [0, 1, 2]
    # Nothing else happens: a fresh pod event is answered without a second group restart.
    wait_reconciled_after(
        deployed.controller, lambda: _touch(rest, namespace, f"{name}-decode-0-wkr-1")
    )
    assert _group_status(rest, namespace, name, "decode")["restarts"] == 1
    assert {p["metadata"]["uid"] for p in _group_pods(rest, namespace, name, "decode", 0)} == {
        p["metadata"]["uid"] for p in after.values()
    }
    assert {
        p["metadata"]["uid"] for p in _group_pods(rest, namespace, name, "prefill", 0)
    } == prefill_before
    assert _group_status(rest, namespace, name, "prefill")["restarts"] == 0
    restarts = [e for e in events_for(rest, namespace, name) if e["reason"] == "GroupRestart"]
    assert len(restarts) == 1 and f"{name}-decode-0" in restarts[0]["message"]


def test_crash_looping_group_exhausts_its_budget(
    control_plane: ControlPlane, short_namespace: str
) -> None:
    """A group whose worker keeps crashing (every incarnation, as on a bad node) is restarted
    until the budget is spent; then the DGD is `failed`, naming the group and the last error."""
    rest = control_plane.rest
    namespace = short_namespace
    doc = _dgd(EXAMPLES["vllm"][0])
    name = doc["metadata"]["name"]
    small_budget = {
        "group_restart_budget": 2,
        "group_restart_window": 600.0,
        "group_restart_backoff": 0.2,
        "group_restart_backoff_cap": 1.0,
    }
    with running_operator(namespace, **small_budget) as operator:
        rest.post(dgd_path(namespace), doc)
        wait_for(
            lambda: settled(rest, namespace, name),
            timeout=120,
            interval=0.5,
            description="DGD successful",
        )
        wait_for(
            lambda: _group_status(rest, namespace, name, "decode").get("phase") == "Running",
            timeout=30,
            description="decode group Running",
        )

        def break_workers_until_failed() -> Doc | None:
            for pod in _group_pods(rest, namespace, name, "decode", 0):
                annotations = pod["metadata"].get("annotations") or {}
                if (
                    pod["metadata"]["labels"].get("role") == "worker"
                    and "dgd.dev/simulate" not in annotations
                ):
                    with contextlib.suppress(ApiError):  # deleted meanwhile by a group restart
                        rest.patch(
                            f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}",
                            {"metadata": {"annotations": {"dgd.dev/simulate": "crashloop"}}},
                        )
            return settled(rest, namespace, name, "failed")

        obj = wait_for(
            break_workers_until_failed, timeout=120, interval=0.3, description="DGD failed"
        )
        ready = next(cond for cond in obj["status"]["conditions"] if cond["type"] == "Ready")
        assert ready["status"] == "False"
        assert ready["reason"] == "GroupRestartBudgetExhausted"
        message = ready["message"]
        assert message.startswith(
            f"GroupRestartBudgetExhausted: {name}-decode-0: 2 restarts in 10m; last: pod "
        )
        assert f"{name}-decode-0-wkr-1 container main restarted (Error, exit code 1)" in message
        group = obj["status"]["services"]["decode"]["groups"][0]
        assert (group["phase"], group["restarts"]) == ("Failed", 2)
        assert len(group["restartTimes"]) == 2
        assert obj["status"]["services"]["prefill"]["groups"][0]["phase"] == "Running"
        reasons = [e["reason"] for e in events_for(rest, namespace, name)]
        assert (
            reasons.count("GroupRestart") == 2 and reasons.count("GroupRestartBudgetExhausted") == 1
        )
        # Failed is final for this revision: no more restarts while the pods keep crashing.
        wait_reconciled_after(
            operator.controller, lambda: _touch(rest, namespace, f"{name}-decode-0-wkr-1")
        )
        assert _group_status(rest, namespace, name, "decode")["restarts"] == 2
        _cleanup(rest, namespace, name)


def test_too_long_dynamo_namespace_is_an_invalid_spec(
    control_plane: ControlPlane, namespace: str
) -> None:
    """`<namespace>-<dgd>` longer than 63 characters cannot be a label value: the DGD fails
    naming `metadata.name` before anything is applied (instead of a 422 on the first child)."""
    rest = control_plane.rest
    doc = _dgd(EXAMPLES["trtllm"][0])
    doc["metadata"]["name"] = name = "trt-tp8-overflow"
    assert len(f"{namespace}-{name}") > 63
    with running_operator(namespace):
        rest.post(dgd_path(namespace), doc)
        obj = wait_for(
            lambda: settled(rest, namespace, name, "failed"), timeout=30, description="DGD failed"
        )
        ready = next(cond for cond in obj["status"]["conditions"] if cond["type"] == "Ready")
        assert ready["reason"] == "invalid_spec"
        assert ready["message"].startswith("metadata.name: the Dynamo namespace")
        assert "nvidia.com/dynamo-namespace" in ready["message"]
        selector = f"nvidia.com/dynamo-graph-deployment-name={name}"
        assert not rest.get(
            f"/apis/apps/v1/namespaces/{namespace}/statefulsets", labelSelector=selector
        )["items"]
        assert not rest.get(f"/api/v1/namespaces/{namespace}/services", labelSelector=selector)[
            "items"
        ]
