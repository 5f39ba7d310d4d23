"""The operator against the real control plane: updates, scaling, pruning, restarts, adapters,
deletion, invalid specs, and an operator restart that must not write anything."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from tests.fixtures.catalog import load_graph
from tests.helpers import wait_for, wait_reconciled_after
from tests.integration.operator_harness import (
    DGDSA_API,
    apiserver_writes,
    count_delta,
    dgd_path,
    dgd_status,
    events_for,
    finish_terminating_namespaces,
    running_operator,
    settled,
)

from dgd_operator import metrics
from dgd_operator.dev.controlplane import ControlPlane

pytestmark = pytest.mark.integration

DEPLOYMENTS = "/apis/apps/v1/namespaces/{ns}/deployments"


def _deployment(rest: Any, ns: str, name: str) -> dict[str, Any]:
    return dict(rest.get(f"{DEPLOYMENTS.format(ns=ns)}/{name}"))


def _deployments(rest: Any, ns: str) -> dict[str, dict[str, Any]]:
    items = rest.get(DEPLOYMENTS.format(ns=ns)).get("items", [])
    return {d["metadata"]["name"]: d for d in items}


def _generation(rest: Any, ns: str, name: str, svc: str) -> str:
    """The Deployment of a worker service's current generation (`<dgd>-<svc>-<worker hash>`)."""
    [workload] = rest.get(dgd_path(ns, name))["status"]["services"][svc]["componentNames"]
    return str(workload)


def _restart_at(deployment: dict[str, Any]) -> str | None:
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    return annotations.get("nvidia.com/restartAt")


def _reasons(rest: Any, ns: str, name: str) -> set[str]:
    return {e["reason"] for e in events_for(rest, ns, name)}


def test_edit_scale_remove_service_and_prune(control_plane: ControlPlane, namespace: str) -> None:
    """A worker spec edit rolls out a new worker generation, replicas scale both ways, removing
    a service deletes its children, children no longer desired are deleted; every step ends in
    `successful` for the new generation."""
    rest = control_plane.rest
    doc = load_graph("vllm-disagg")
    name = doc["metadata"]["name"]
    with running_operator(namespace):
        rest.post(dgd_path(namespace), doc)
        wait_for(lambda: settled(rest, namespace, name), timeout=60, description="DGD successful")
        old_decode = _generation(rest, namespace, name, "VllmDecodeWorker")

        # 1. Spec edit: a new env var starts a new worker generation; the old one goes.
        rest.patch(
            dgd_path(namespace, name),
            {
                "spec": {
                    "services": {
                        "VllmDecodeWorker": {"envs": [{"name": "DGD_TEST_EDIT", "value": "1"}]}
                    }
                }
            },
        )
        edited_dgd = wait_for(
            lambda: settled(rest, namespace, name), timeout=60, description="successful after edit"
        )
        assert edited_dgd["status"]["rollingUpdate"]["phase"] == "Completed"
        decode = _generation(rest, namespace, name, "VllmDecodeWorker")
        assert decode != old_decode and old_decode not in _deployments(rest, namespace)
        after = _deployment(rest, namespace, decode)
        env = after["spec"]["template"]["spec"]["containers"][0].get("env", [])
        assert {"name": "DGD_TEST_EDIT", "value": "1"} in env
        assert "RollingUpdateCompleted" in _reasons(rest, namespace, name)

        # 2. Scale up and down.
        for replicas in (3, 1):
            rest.patch(
                dgd_path(namespace, name),
                {"spec": {"services": {"VllmDecodeWorker": {"replicas": replicas}}}},
            )
            obj = wait_for(
                lambda: settled(rest, namespace, name),
                timeout=60,
                description=f"successful at {replicas}",
            )
            assert obj["status"]["services"]["VllmDecodeWorker"]["readyReplicas"] == replicas
            assert _deployment(rest, namespace, decode)["spec"]["replicas"] == replicas
        assert "Scaled" in _reasons(rest, namespace, name)

        # 2b. An edit made behind the operator's back (kubectl scale) is reverted.
        edited = rest.patch(
            f"{DEPLOYMENTS.format(ns=namespace)}/{decode}", {"spec": {"replicas": 4}}
        )
        wait_for(
            lambda: (
                (d := _deployment(rest, namespace, decode))["spec"]["replicas"] == 1
                and d["metadata"]["generation"] > edited["metadata"]["generation"]
            ),
            timeout=30,
            description="operator re-applies the edited Deployment",
        )
        # The Event follows the re-apply: wait for it, not race it.
        wait_for(
            lambda: any(
                "edited outside the operator" in e["message"]
                for e in events_for(rest, namespace, name)
            ),
            timeout=30,
            description="the edited-outside Event",
        )

        # 3. Removing a service deletes its children (update rules are admission's business,
        #    the reconcile acts on the stored spec); putting it back re-creates them.
        prefill = _generation(rest, namespace, name, "VllmPrefillWorker")
        services = f"/api/v1/namespaces/{namespace}/services"
        prefill_service = f"{name}-vllmprefillworker"
        assert rest.exists(f"{services}/{prefill_service}")
        prefill_spec = rest.get(dgd_path(namespace, name))["spec"]["services"]["VllmPrefillWorker"]
        rest.patch(dgd_path(namespace, name), {"spec": {"services": {"VllmPrefillWorker": None}}})
        wait_for(
            lambda: (
                prefill not in _deployments(rest, namespace)
                and not rest.exists(f"{services}/{prefill_service}")
            ),
            timeout=30,
            description="the removed service's Deployment and Service deleted",
        )
        obj = wait_for(
            lambda: settled(rest, namespace, name),
            timeout=60,
            description="successful without prefill",
        )
        assert set(obj["status"]["services"]) == {"Frontend", "VllmDecodeWorker"}
        assert any(
            e["reason"] == "Deleted" and f"Deployment/{prefill}" in e["message"]
            for e in events_for(rest, namespace, name)
        )
        rest.patch(
            dgd_path(namespace, name), {"spec": {"services": {"VllmPrefillWorker": prefill_spec}}}
        )
        # The set of workers is part of their generation: both roll to a new one.
        wait_for(
            lambda: (
                settled(rest, namespace, name)
                and any(d.startswith(prefill_service) for d in _deployments(rest, namespace))
            ),
            timeout=60,
            description="successful again with prefill",
        )

        # 4. Children that are no longer desired are deleted: switching the graph to etcd
        #    discovery drops the discovery ServiceAccount/Role/RoleBinding and worker Services.
        selector = f"nvidia.com/dynamo-graph-deployment-name={name}"
        accounts = f"/api/v1/namespaces/{namespace}/serviceaccounts"
        assert rest.get(accounts, labelSelector=selector)["items"]
        rest.patch(
            dgd_path(namespace, name),
            {"metadata": {"annotations": {"nvidia.com/dynamo-discovery-backend": "etcd"}}},
        )
        wait_for(
            lambda: not rest.get(accounts, labelSelector=selector)["items"],
            timeout=30,
            description="discovery ServiceAccount pruned",
        )
        left = {o["metadata"]["name"] for o in rest.get(services, labelSelector=selector)["items"]}
        assert left == {f"{name}-frontend"}
        # Discovery is a worker pod input: the workers rolled to a generation without it.
        wait_for(
            lambda: (
                settled(rest, namespace, name)
                and _generation(rest, namespace, name, "VllmDecodeWorker") != decode
            ),
            timeout=60,
            description="the workers rolled out",
        )
        decode = _generation(rest, namespace, name, "VllmDecodeWorker")
        prefill = _generation(rest, namespace, name, "VllmPrefillWorker")
        assert set(_deployments(rest, namespace)) == {f"{name}-frontend", decode, prefill}
        # Pods stop naming the pruned account (a field left out of an apply is not cleared by it).
        for deployment in _deployments(rest, namespace):
            pod = _deployment(rest, namespace, deployment)["spec"]["template"]["spec"]
            assert pod.get("serviceAccountName") in (None, "default"), (
                deployment,
                pod.get("serviceAccountName"),
            )
        wait_for(
            lambda: settled(rest, namespace, name), timeout=60, description="successful after prune"
        )
        assert "Deleted" in _reasons(rest, namespace, name)


@pytest.mark.parametrize("strategy", ["Sequential", "Parallel"])
def test_restart(control_plane: ControlPlane, namespace: str, strategy: str) -> None:
    """`spec.restart` rolls every service once (one at a time for Sequential) and completes."""
    rest = control_plane.rest
    doc = load_graph("vllm-disagg")
    name = doc["metadata"]["name"]
    with running_operator(namespace):
        rest.post(dgd_path(namespace), doc)
        wait_for(lambda: settled(rest, namespace, name), timeout=60, description="DGD successful")
        restart: dict[str, Any] = {"id": "r1"}
        if strategy == "Parallel":
            restart["strategy"] = {"type": "Parallel"}
        else:
            restart["strategy"] = {
                "type": "Sequential",
                "order": ["VllmPrefillWorker", "VllmDecodeWorker", "Frontend"],
            }
        rest.patch(dgd_path(namespace, name), {"spec": {"restart": restart}})
        widest = 0

        def completed() -> bool:
            nonlocal widest
            status = dgd_status(rest, namespace, name).get("restart") or {}
            widest = max(widest, len(status.get("inProgress") or []))
            return status.get("observedID") == "r1" and status.get("phase") == "Completed"

        wait_for(completed, timeout=90, interval=0.05, description="restart r1 completed")
        deployments = _deployments(rest, namespace)
        assert {d: _restart_at(obj) for d, obj in deployments.items()} == dict.fromkeys(
            deployments, "r1"
        )
        # Which services each reconcile stamped, from the Events: polling the status could miss
        # a Parallel restart's short window with all three in progress.
        stamped = sorted(
            e["message"]
            for e in events_for(rest, namespace, name)
            if e["reason"] == "RestartStarted" and ": restarting " in e["message"]
        )
        if strategy == "Sequential":
            assert widest == 1
            assert stamped == [
                f"restart r1: restarting {svc}"
                for svc in ("Frontend", "VllmDecodeWorker", "VllmPrefillWorker")
            ]
        else:
            assert stamped == [
                "restart r1: restarting Frontend, VllmDecodeWorker, VllmPrefillWorker"
            ]
        obj = wait_for(
            lambda: settled(rest, namespace, name),
            timeout=60,
            description="successful after restart",
        )
        assert obj["status"]["restart"]["inProgress"] == []
        # The Events are posted after the status write that completes the restart.
        wait_for(
            lambda: {"RestartStarted", "RestartCompleted"} <= _reasons(rest, namespace, name),
            timeout=30,
            description="RestartStarted and RestartCompleted Events",
        )


def test_scaling_adapter_round_trip(control_plane: ControlPlane, namespace: str) -> None:
    """`kubectl scale dgdsa/...` (the scale subresource) drives the service's replicas; disabling
    the adapter deletes it."""
    rest = control_plane.rest
    doc = load_graph("vllm-agg")
    name = doc["metadata"]["name"]
    doc["spec"]["services"]["worker"]["scalingAdapter"] = {"enabled": True}
    adapter = f"{DGDSA_API.format(ns=namespace)}/{name}-worker"
    with running_operator(namespace):
        rest.post(dgd_path(namespace), doc)
        wait_for(lambda: settled(rest, namespace, name), timeout=60, description="DGD successful")
        created = wait_for(
            lambda: rest.get(adapter).get("status"), timeout=30, description="adapter status"
        )
        assert created["replicas"] == 1
        assert created["selector"] == (
            f"nvidia.com/dynamo-component=worker,nvidia.com/dynamo-graph-deployment-name={name}"
        )

        rest.patch(f"{adapter}/scale", {"spec": {"replicas": 2}})
        wait_for(
            lambda: (
                rest.get(dgd_path(namespace, name))["spec"]["services"]["worker"].get("replicas")
                == 2
            ),
            timeout=30,
            description="DGD replicas follow the adapter",
        )
        obj = wait_for(
            lambda: settled(rest, namespace, name), timeout=60, description="successful at 2"
        )
        assert obj["status"]["services"]["worker"]["readyReplicas"] == 2
        scale = wait_for(
            lambda: (s := rest.get(f"{adapter}/scale"))["status"].get("replicas") == 2 and s,
            timeout=30,
            description="adapter /scale reports 2",
        )
        assert scale["status"]["selector"].startswith("nvidia.com/dynamo-component=worker")
        assert rest.get(adapter)["status"].get("lastScaleTime")

        rest.patch(
            dgd_path(namespace, name),
            {"spec": {"services": {"worker": {"scalingAdapter": {"enabled": False}}}}},
        )
        wait_for(lambda: not rest.exists(adapter), timeout=30, description="adapter deleted")
        # The Event is posted right after the delete returns: wait for it, not race it.
        wait_for(
            lambda: "AdapterDeleted" in _reasons(rest, namespace, name),
            timeout=30,
            description="AdapterDeleted event",
        )


def test_delete_garbage_collects_children(control_plane: ControlPlane, namespace: str) -> None:
    """Deleting the DGD removes every child through owner references."""
    rest = control_plane.rest
    doc = load_graph("sglang-agg")
    name = doc["metadata"]["name"]
    selector = f"nvidia.com/dynamo-graph-deployment-name={name}"
    with running_operator(namespace):
        rest.post(dgd_path(namespace), doc)
        wait_for(lambda: settled(rest, namespace, name), timeout=60, description="DGD successful")
        assert rest.get(DEPLOYMENTS.format(ns=namespace), labelSelector=selector)["items"]
        rest.delete(dgd_path(namespace, name), propagationPolicy="Foreground")

        def children_left() -> list[str]:
            left = []
            for path in (
                DEPLOYMENTS.format(ns=namespace),
                f"/api/v1/namespaces/{namespace}/services",
                f"/api/v1/namespaces/{namespace}/serviceaccounts",
            ):
                left += [
                    o["metadata"]["name"] for o in rest.get(path, labelSelector=selector)["items"]
                ]
            return left

        wait_for(
            lambda: not children_left() and not rest.exists(dgd_path(namespace, name)),
            timeout=60,
            description="DGD and children gone",
        )


def test_invalid_dgd_fails_once_and_leaves_children(
    control_plane: ControlPlane, namespace: str
) -> None:
    """A DGD that `validate_dgd` rejects ends `failed` with the field path in the message and
    one Warning Event; no retries (and no writes) until the spec changes."""
    rest = control_plane.rest
    doc = load_graph("vllm-agg")
    name = doc["metadata"]["name"]
    # A service key that cannot become a DNS-1123 object name.
    doc["spec"]["services"]["Bad_Worker"] = copy.deepcopy(doc["spec"]["services"]["worker"])
    with running_operator(namespace) as operator:
        rest.post(dgd_path(namespace), doc)
        obj = wait_for(
            lambda: settled(rest, namespace, name, "failed"), timeout=60, description="DGD failed"
        )
        ready = next(cond for cond in obj["status"]["conditions"] if cond["type"] == "Ready")
        assert ready["status"] == "False"
        # Named on the hub (the operator reads the stored v1beta1 object).
        assert "spec.components[0].name" in ready["message"] and "Bad_Worker" in ready["message"]
        warnings = wait_for(
            lambda: [e for e in events_for(rest, namespace, name) if e["type"] == "Warning"],
            timeout=10,
            description="a Warning event",
        )
        assert len(warnings) == 1

        writes = metrics.api_request_count(metrics.WRITE_VERBS)
        # A new watch event for the DGD (metadata only): reconciled, and still no writes.
        wait_reconciled_after(operator.controller, lambda: _touch(rest, dgd_path(namespace, name)))
        assert metrics.api_request_count(metrics.WRITE_VERBS) == writes
        assert len([e for e in events_for(rest, namespace, name) if e["type"] == "Warning"]) == 1


def _touch(rest: Any, path: str) -> None:
    """A watch event without a change the operator acts on: a fresh test annotation."""
    rest.patch(path, {"metadata": {"annotations": {"dgd.dev/touched": uuid.uuid4().hex}}})


def _touch_each(rest: Any, ns: str, names: list[str]) -> None:
    """One DGD watch event per name (one PATCH each, made by the test)."""
    for name in names:
        _touch(rest, dgd_path(ns, name))


def _decode_group(rest: Any, ns: str, name: str) -> dict[str, Any]:
    groups = (dgd_status(rest, ns, name).get("services") or {}).get("decode", {}).get("groups") or [
        {}
    ]
    return dict(groups[0])


def test_operator_restart_issues_zero_writes(control_plane: ControlPlane, namespace: str) -> None:
    """Restarting the operator over converged DGDs writes nothing (counted by the API server)."""
    rest = control_plane.rest
    agg = load_graph("vllm-agg")
    agg["spec"]["services"]["worker"]["scalingAdapter"] = {"enabled": True}
    disagg = load_graph("sglang-disagg")
    multinode = load_graph("vllm-multinode-ray")
    names = [agg["metadata"]["name"], disagg["metadata"]["name"], multinode["metadata"]["name"]]
    with running_operator(namespace) as operator:
        rest.post(dgd_path(namespace), agg)
        rest.post(dgd_path(namespace), disagg)
        rest.post(dgd_path(namespace), multinode)
        # A completed restart is part of the converged state too.
        for name in names:
            wait_for(
                lambda n=name: settled(rest, namespace, n),
                timeout=60,
                description=f"{name} successful",
            )
        # So is a multinode group restarted once (its restart bookkeeping lives in status).
        group_path = f"/api/v1/namespaces/{namespace}/pods/{names[2]}-decode-0-wkr-1"
        wait_for(
            lambda: _decode_group(rest, namespace, names[2]).get("phase") == "Running",
            timeout=30,
            description="decode group Running",
        )
        rest.delete(group_path)
        wait_for(
            lambda: (
                (g := _decode_group(rest, namespace, names[2])).get("restarts") == 1
                and g.get("phase") == "Running"
                and settled(rest, namespace, names[2])
            ),
            timeout=60,
            description="decode group restarted once and Running",
        )
        rest.patch(dgd_path(namespace, names[1]), {"spec": {"restart": {"id": "before-restart"}}})
        wait_for(
            lambda: (
                (dgd_status(rest, namespace, names[1]).get("restart") or {}).get("phase")
                == "Completed"
                and settled(rest, namespace, names[1])
            ),
            timeout=90,
            description="restart completed",
        )
        # Trailing watch events are answered before this operator stops.
        wait_reconciled_after(
            operator.controller, lambda: _touch_each(rest, namespace, names), keys=len(names)
        )

    # Namespaces of earlier tests are being emptied by the namespace controller (DELETEs);
    # the API server counts cluster-wide, so wait for that to finish first.
    wait_for(
        lambda: not finish_terminating_namespaces(rest),
        timeout=90,
        interval=0.5,
        description="no namespace terminating",
    )
    before = apiserver_writes(rest)
    assert sum(before.values()) > 0, "the API server's write counters are not visible"
    client_writes = metrics.api_request_count(metrics.WRITE_VERBS)
    with running_operator(namespace) as operator:
        # Every DGD and child is seen and reconciled at least once after the restart.
        controller = operator.controller
        wait_for(
            lambda: controller.reconciles >= len(names) and len(controller.queue) == 0,
            timeout=30,
            description="initial reconciles done",
        )
        # Fresh events for every DGD are answered without a write, too.
        wait_reconciled_after(
            controller, lambda: _touch_each(rest, namespace, names), keys=len(names)
        )
        assert controller.backoff.failures == {}
    after = apiserver_writes(rest)
    # The only writes are the test's own touches.
    assert count_delta(before, after) == {("PATCH", "dynamographdeployments", ""): len(names)}
    assert metrics.api_request_count(metrics.WRITE_VERBS) == client_writes
    for name in names:
        assert settled(rest, namespace, name)
    assert _decode_group(rest, namespace, names[2])["restarts"] == 1


def test_image_pull_secret_discovery(control_plane: ControlPlane, namespace: str) -> None:
    """A docker-registry Secret for the images' registry, added after the DGD, reaches its pods."""
    import base64
    import json

    rest = control_plane.rest
    doc = load_graph("sglang-agg")
    name = doc["metadata"]["name"]
    with running_operator(namespace):
        rest.post(dgd_path(namespace), doc)
        wait_for(lambda: settled(rest, namespace, name), timeout=60, description="DGD successful")
        assert not any(
            d["spec"]["template"]["spec"].get("imagePullSecrets")
            for d in _deployments(rest, namespace).values()
        )
        config = {"auths": {"nvcr.io": {"auth": base64.b64encode(b"$oauthtoken:x").decode()}}}
        rest.post(
            f"/api/v1/namespaces/{namespace}/secrets",
            {
                "metadata": {"name": "ngc"},
                "type": "kubernetes.io/dockerconfigjson",
                "data": {
                    ".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()
                },
            },
        )

        def pull_secrets() -> set[str]:
            return {
                ref["name"]
                for d in _deployments(rest, namespace).values()
                for ref in d["spec"]["template"]["spec"].get("imagePullSecrets") or []
            }

        wait_for(lambda: pull_secrets() == {"ngc"}, timeout=30, description="imagePullSecrets: ngc")
        wait_for(
            lambda: settled(rest, namespace, name),
            timeout=60,
            description="successful after rollout",
        )
