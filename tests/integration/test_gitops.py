"""The GitOps recipe of docs/gitops.md, exercised: a graph applied from "Git" (server-side apply
under a GitOps tool's field manager, as Argo CD with `ServerSideApply=true` does, adapter-owned
`replicas` left out), scaled through its DynamoGraphDeploymentScalingAdapter, then re-applied
from "Git" unchanged: nobody fights. The re-apply writes nothing, the operator writes nothing
over a window after it, and the replicas stay with the adapter. An edit behind everyone's back
is undone by the running operator (no restart needed)."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from tests.fixtures.catalog import load_graph
from tests.helpers import wait_for
from tests.integration.operator_harness import (
    DGDSA_API,
    dgd_path,
    running_operator,
    settled,
)

from dgd_operator import metrics
from dgd_operator.dev.controlplane import ControlPlane

pytestmark = pytest.mark.integration

GITOPS_MANAGER = "argocd-controller"  # the field manager Argo CD's server-side apply uses
APPLY = "application/apply-patch+yaml"
ADAPTER_OWNED = ("decode", "prefill")
QUIET_WINDOW = 5.0  # seconds of watching for writes after a step that must cause none


def git_manifest() -> dict[str, Any]:
    """The graph as kept in Git: adapter-managed services without `replicas` (way 1 of the doc)."""
    doc = load_graph("scaling-adapter")
    doc["metadata"]["name"] = "git"  # short: <namespace>-<name> is a label value (63 chars)
    for service in ADAPTER_OWNED:
        doc["spec"]["services"][service].pop("replicas")
    return doc


def apply_from_git(rest: Any, namespace: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply as the GitOps tool does (its own field manager, conflicts forced)."""
    return rest.request(
        "PATCH",
        dgd_path(namespace, doc["metadata"]["name"]),
        doc,
        params={"fieldManager": GITOPS_MANAGER, "force": "true"},
        content_type=APPLY,
    )


def replicas(rest: Any, namespace: str, name: str, service: str) -> int | None:
    """`spec.services.<service>.replicas` of the live graph."""
    spec = rest.get(dgd_path(namespace, name))["spec"]["services"][service]
    value = spec.get("replicas")
    return int(value) if value is not None else None


def quiet(rest: Any, namespace: str, name: str) -> None:
    """Over a window: the operator writes nothing, and nobody writes the graph or its adapters
    (their resourceVersions stay put; the API server's own counters are cluster-wide, so other
    tests' namespace cleanups would show there)."""

    def versions() -> dict[str, str]:
        objects = [rest.get(dgd_path(namespace, name))]
        objects += rest.get(DGDSA_API.format(ns=namespace))["items"]
        return {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in objects}

    before, ours = versions(), metrics.api_request_count(metrics.WRITE_VERBS)
    time.sleep(QUIET_WINDOW)
    assert metrics.api_request_count(metrics.WRITE_VERBS) == ours, "the operator wrote"
    assert versions() == before


def test_git_reapply_and_the_adapter_do_not_fight(
    control_plane: ControlPlane, namespace: str
) -> None:
    rest = control_plane.rest
    doc = git_manifest()
    name = doc["metadata"]["name"]
    adapter = f"{DGDSA_API.format(ns=namespace)}/{name}-decode"
    with running_operator(namespace):
        apply_from_git(rest, namespace, copy.deepcopy(doc))
        wait_for(lambda: settled(rest, namespace, name), timeout=90, description="graph settled")
        wait_for(lambda: rest.exists(adapter), timeout=30, description="decode adapter")

        # The autoscaler's move: the adapter's /scale, which the operator copies into the graph.
        rest.patch(f"{adapter}/scale", {"spec": {"replicas": 3}})
        wait_for(
            lambda: (
                replicas(rest, namespace, name, "decode") == 3 and settled(rest, namespace, name)
            ),
            timeout=90,
            description="the graph follows the adapter to 3 decode replicas",
        )
        generation = rest.get(dgd_path(namespace, name))["metadata"]["generation"]

        # Git re-applied, unchanged: a no-op for the API server and for the operator.
        live = apply_from_git(rest, namespace, copy.deepcopy(doc))
        assert live["metadata"]["generation"] == generation
        assert live["spec"]["services"]["decode"]["replicas"] == 3
        quiet(rest, namespace, name)  # no fight after the Git re-apply
        assert replicas(rest, namespace, name, "decode") == 3
        assert rest.get(adapter)["spec"]["replicas"] == 3
        # Git does not own the adapter's field, the operator does.
        managers = {
            entry["manager"]
            for entry in rest.get(dgd_path(namespace, name))["metadata"]["managedFields"]
            if "f:decode" in str(entry.get("fieldsV1", {}).get("f:spec", {}))
            and "f:replicas" in str(entry["fieldsV1"]["f:spec"]["f:services"]["f:decode"])
        }
        assert GITOPS_MANAGER not in managers

        # Someone edits the count behind the adapter's back (no webhook here to refuse it):
        # the running operator puts the adapter's count back, once, and goes quiet again.
        rest.patch(dgd_path(namespace, name), {"spec": {"services": {"decode": {"replicas": 1}}}})
        wait_for(
            lambda: (
                replicas(rest, namespace, name, "decode") == 3 and settled(rest, namespace, name)
            ),
            timeout=60,
            description="the operator re-asserts the adapter's 3 replicas",
        )
        quiet(rest, namespace, name)  # no loop after the re-assertion
        assert rest.get(adapter)["spec"]["replicas"] == 3
