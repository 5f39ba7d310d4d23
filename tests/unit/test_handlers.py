"""What the operator watches (server-side selected) and what each watch event does."""

from __future__ import annotations

import base64
import json
from typing import Any

import kopf
import pytest

from dgd_operator.api.constants import LABEL_GRAPH, LABEL_MANAGED_BY, MANAGED_BY
from dgd_operator.controllerkit.ownership import apply_upgrade_patch
from dgd_operator.handlers import (
    CHILD_SELECTOR,
    GROUP_POD_SELECTOR,
    PULL_SECRET_SELECTOR,
    SHARED_SELECTOR,
    Watches,
    docker_config_registries,
    register,
    slim,
)
from dgd_operator.reconcile.controller import Controller
from dgd_operator.reconcile.view import IndexedClusterView
from dgd_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit


def test_docker_config_registries_reads_hosts_only() -> None:
    config = {"auths": {"nvcr.io": {"auth": "eA=="}, "https://index.docker.io/v1/": {}}}
    secret = {"data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}
    assert docker_config_registries(secret) == ("https://index.docker.io/v1/", "nvcr.io")
    assert docker_config_registries({"data": {".dockerconfigjson": "not base64!"}}) == ()
    assert docker_config_registries({}) == ()


def _watches(**settings: Any) -> tuple[Watches, Controller, IndexedClusterView]:
    controller = Controller(OperatorSettings(workers=1, **settings))
    view = IndexedClusterView()
    controller.bind_view(view)
    return Watches(controller, view), controller, view


def test_every_kind_is_watched_once_per_namespace_selected_by_the_api_server() -> None:
    watches, _, _ = _watches(image_pull_secret_discovery=True)
    informers = watches.build(object(), ["a", "b"])  # type: ignore[arg-type]
    watched = {(i.path, tuple(i.selectors.items())) for i in informers}
    assert len(watched) == len(informers)  # nothing watched twice
    # Accounts are watched twice, with disjoint selectors: as children and as shared objects.
    by_path = {
        i.path: i.selectors for i in informers if i.selectors != {"labelSelector": SHARED_SELECTOR}
    }
    assert by_path["/api/v1/namespaces/a/pods"] == {"labelSelector": GROUP_POD_SELECTOR}
    assert by_path["/apis/apps/v1/namespaces/b/deployments"] == {"labelSelector": CHILD_SELECTOR}
    assert by_path["/api/v1/namespaces/a/secrets"] == {"fieldSelector": PULL_SECRET_SELECTOR}
    assert (
        "/api/v1/namespaces/a/serviceaccounts",
        (("labelSelector", SHARED_SELECTOR),),
    ) in watched
    assert "/apis/nvidia.com/v1beta1/namespaces/a/dynamographdeployments" in by_path
    cluster_wide = watches.build(object(), [])  # type: ignore[arg-type]
    assert "/apis/apps/v1/deployments" in {i.path for i in cluster_wide}


def _child(uid: str, graph: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "uid": uid,
            "name": f"{graph}-worker",
            "namespace": "ns",
            "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_GRAPH: graph},
            **meta,
        },
    }


def test_child_events_fill_the_view_and_enqueue_their_graph() -> None:
    watches, controller, view = _watches()
    watches.child_event("ADDED", _child("u1", "g"))
    assert [c["metadata"]["uid"] for c in view.children(("ns", "g"))] == ["u1"]
    assert len(controller.queue) == 1  # the graph is queued for a reconcile
    watches.child_event("DELETED", _child("u1", "g"))
    assert view.children(("ns", "g")) == []


def test_dgd_events_keep_the_body_and_a_deleted_dgd_leaves_the_view() -> None:
    watches, _, view = _watches()
    body = {"metadata": {"uid": "d1", "name": "g", "namespace": "ns"}, "spec": {}}
    watches.dgd_event("ADDED", body)
    assert view.dgd(("ns", "g")) == body and view.dgd_keys("ns") == [("ns", "g")]
    watches.dgd_event("DELETED", body)
    assert view.dgd(("ns", "g")) is None


async def _drain(controller: Controller) -> list[tuple[str, str]]:
    taken = []
    while len(controller.queue):
        key = await controller.queue.get()
        controller.queue.done(key)
        taken.append(key)
    return taken


OUR_STATUS = {"state": "pending", "observedGeneration": 1}


def _dgd(
    resource_version: str, status: dict[str, Any] | None = None, **meta: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {
            "uid": "d1",
            "name": "g",
            "namespace": "ns",
            "generation": 1,
            "resourceVersion": resource_version,
            **meta,
        },
        "spec": {"services": {}},
    }
    if status is not None:
        body["status"] = status
    return body


async def test_our_own_status_write_coming_back_is_not_reconciled_again() -> None:
    watches, controller, view = _watches()
    watches.dgd_event("ADDED", _dgd("1"))
    assert await _drain(controller) == [("ns", "g")]
    controller.state.graph(("ns", "g"), "d1").written_status = dict(OUR_STATUS)
    ownership = [{"manager": MANAGED_BY, "operation": "Apply", "subresource": "status"}]
    echo = _dgd("2", dict(OUR_STATUS), managedFields=ownership)
    watches.dgd_event("MODIFIED", echo)
    assert await _drain(controller) == []  # the write's own event: nothing new to reconcile
    assert view.dgd(("ns", "g")) == slim(echo)  # ...but the cache has it


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ("the status someone else wrote", {"state": "failed", "observedGeneration": 1}),
        ("a new generation", OUR_STATUS),
        ("a label", OUR_STATUS),
        ("an annotation", OUR_STATUS),
        ("a deletion", OUR_STATUS),
    ],
)
async def test_a_dgd_event_with_any_other_change_is_reconciled(
    change: str, status: dict[str, Any]
) -> None:
    watches, controller, _ = _watches()
    watches.dgd_event("ADDED", _dgd("1"))
    await _drain(controller)
    controller.state.graph(("ns", "g"), "d1").written_status = dict(OUR_STATUS)
    changes: dict[str, dict[str, Any]] = {
        "a new generation": {"generation": 2},
        "a label": {"labels": {"team": "a"}},
        "an annotation": {"annotations": {"nvidia.com/x": "y"}},
        "a deletion": {"deletionTimestamp": "2026-12-06T00:00:00Z"},
    }
    watches.dgd_event("MODIFIED", _dgd("2", dict(status), **changes.get(change, {})))
    assert await _drain(controller) == [("ns", "g")], change


async def test_a_status_event_of_a_graph_we_never_wrote_status_for_is_reconciled() -> None:
    watches, controller, _ = _watches()
    watches.dgd_event("ADDED", _dgd("1"))
    await _drain(controller)
    watches.dgd_event("MODIFIED", _dgd("2", dict(OUR_STATUS)))  # e.g. after an operator restart
    assert await _drain(controller) == [("ns", "g")]


def test_the_cache_keeps_only_a_mark_of_our_own_create_ownership() -> None:
    ours = {
        "manager": MANAGED_BY,
        "operation": "Update",
        "apiVersion": "v1",
        "time": "2026-01-01T00:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {"f:x": {}}},
    }
    fields = [ours, {"manager": MANAGED_BY, "operation": "Apply"}, {"manager": "kcm"}]
    kept = slim(_child("u1", "g", managedFields=fields))
    # The field set is dropped (the fold reads the object afresh); the mark still asks for it.
    mark = {"manager": MANAGED_BY, "operation": "Update", "fieldsType": "FieldsV1"}
    assert kept["metadata"]["managedFields"] == [mark]
    assert apply_upgrade_patch(kept, MANAGED_BY) is not None
    assert "managedFields" not in slim(_child("u1", "g", managedFields=fields[1:]))["metadata"]
    assert "managedFields" not in slim(_child("u1", "g"))["metadata"]


def test_the_cache_keeps_no_pod_template_spec_of_a_child() -> None:
    watches, _, view = _watches()
    template = {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "main"}]}}
    watches.child_event("ADDED", _child("u1", "g", managedFields=[{"manager": "kcm"}]))
    child = {**_child("u2", "g"), "spec": {"replicas": 1, "template": template}}
    watches.child_event("ADDED", child)
    cached = {c["metadata"]["uid"]: c for c in view.children(("ns", "g"))}
    assert "managedFields" not in cached["u1"]["metadata"]
    assert cached["u2"]["spec"] == {"replicas": 1, "template": {"metadata": template["metadata"]}}


def test_kopf_runs_only_the_lifecycle_no_watch_or_index_of_its_own() -> None:
    registry = kopf.OperatorRegistry()
    register(registry, Controller(OperatorSettings(workers=1)), lambda: None)  # type: ignore[arg-type,return-value]
    assert not registry._indexing.has_handlers(  # type: ignore[attr-defined]
        resource=kopf.Resource("apps", "v1", "deployments", namespaced=True)
    )
    assert list(registry._watching.get_all_handlers()) == []  # type: ignore[attr-defined]
    assert list(registry._indexing.get_all_handlers()) == []  # type: ignore[attr-defined]
