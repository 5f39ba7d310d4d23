"""Taking over a cluster from Dynamo's operator, on the real control plane (issue 10, item 6).

The session's CRDs are first replaced by Dynamo-shaped ones (generated here: v1beta1 storage,
conversion strategy `None`, Dynamo's annotations and no labels of ours, an old `storedVersions`),
and graphs are stored the way Dynamo's operator stores them: one written natively at v1beta1,
one submitted at v1alpha1 and kept as Dynamo's webhook converts it (v1beta1 plus the
`nvidia.com/dgd-spec` annotation). Then ours is installed as the operator does on start: its
CRDs applied in place (conversion pointed at our webhook), stored versions migrated, the
operator run. Every object must survive unchanged, reconcile to its children, read the same in
both versions, and `storedVersions` must end as just v1beta1.
"""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Mapping
from typing import Any

import pytest
from tests.fixtures.catalog import load_graph
from tests.helpers import wait_for
from tests.integration.operator_harness import running_operator

from dgd_operator.admission.crd_upgrade import (
    desired_crd,
    first_difference,
    packaged_crds,
    upgrade_crds,
)
from dgd_operator.admission.migration import migrate_stored_versions
from dgd_operator.api.constants import ANNOTATION_DGD_SPEC
from dgd_operator.api.conversion import convert
from dgd_operator.dev.controlplane import ControlPlane, free_port
from dgd_operator.dev.rest import ApiError, KubeRest
from dgd_operator.main import connect

pytestmark = pytest.mark.integration

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
CONVERTED = ("dynamographdeployments.nvidia.com", "dynamographdeploymentscalingadapters.nvidia.com")
A1 = "/apis/nvidia.com/v1alpha1/namespaces/{ns}/{plural}"
B1 = "/apis/nvidia.com/v1beta1/namespaces/{ns}/{plural}"
DGDS = "dynamographdeployments"
DGDSAS = "dynamographdeploymentscalingadapters"
SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")


def dynamo_shaped(ours: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """A CRD as Dynamo's chart installs it: same group, names and versions (v1beta1 stored),
    its own v1alpha1 schema (free-form here), no conversion webhook, controller-gen metadata."""
    crd = copy.deepcopy(dict(ours))
    crd["metadata"] = {
        "name": ours["metadata"]["name"],
        "annotations": {"controller-gen.kubebuilder.io/version": "v0.16.4"},
        "resourceVersion": live["metadata"]["resourceVersion"],
    }
    crd["spec"]["conversion"] = {"strategy": "None"}
    for version in crd["spec"]["versions"]:
        if version["name"] == "v1alpha1":
            free = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            version["schema"] = {"openAPIV3Schema": free}
    return crd


def user_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """`obj` without what the API server adds (ids, generation, status)."""
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    for key in SERVER_FIELDS:
        out["metadata"].pop(key, None)
    return out


def runnable(name: str) -> dict[str, Any]:
    """Our aggregated vLLM graph (frontend + one worker), runnable by the fake kubelet."""
    doc = load_graph("vllm-agg")
    doc["metadata"] = {"name": name}
    doc["spec"]["services"]["worker"]["replicas"] = 2
    doc["spec"]["services"]["Frontend"]["replicas"] = 1  # nothing left for the defaults
    return doc


def _ready(rest: KubeRest, namespace: str, name: str) -> dict[str, Any] | None:
    hub: dict[str, Any] = rest.get(f"{B1.format(ns=namespace, plural=DGDS)}/{name}")
    status = hub.get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    current = status.get("observedGeneration") == hub["metadata"]["generation"]
    return hub if ready and ready[0]["status"] == "True" and current else None


async def _install_ours(
    crds: list[dict[str, Any]], client_config: Mapping[str, Any]
) -> tuple[list[str], list[str], int]:
    """What the operator does on start: CRDs in place (twice: the second is free), then the
    stored-version migration."""
    client = connect()
    try:
        first = await upgrade_crds(client, crds, client_config=client_config)
        second = await upgrade_crds(client, crds, client_config=client_config)
        migrated = await migrate_stored_versions(client, CONVERTED)
    finally:
        await client.close()
    return first, second, migrated


def _differences(
    rest: KubeRest, ours: Mapping[str, Mapping[str, Any]], client_config: Mapping[str, Any]
) -> dict[str, str | None]:
    """Per CRD, where the live object still differs from what the upgrade wants (diagnostics)."""
    out: dict[str, str | None] = {}
    for name in CONVERTED:
        live = rest.get(f"{CRD_PATH}/{name}")
        desired = desired_crd(ours[name], live, client_config)
        wanted = {k: desired[k] for k in ("metadata", "spec")}
        out[name] = first_difference(live, wanted)
    return out


def _conversion_served(rest: KubeRest, namespace: str, name: str) -> bool:
    """True once a v1alpha1 read goes through a conversion webhook (services, not components)."""
    spoke = rest.get(f"{A1.format(ns=namespace, plural=DGDS)}/{name}")
    return "services" in (spoke.get("spec") or {})


def test_taking_over_dynamos_crds_and_graphs(control_plane: ControlPlane, namespace: str) -> None:
    rest = control_plane.rest
    crds = packaged_crds()
    ours = {crd["metadata"]["name"]: crd for crd in crds}
    live = {name: rest.get(f"{CRD_PATH}/{name}") for name in CONVERTED}
    client_config = live[CONVERTED[0]]["spec"]["conversion"]["webhook"]["clientConfig"]
    try:
        # --- the cluster as Dynamo's operator left it
        for name in CONVERTED:
            rest.put(f"{CRD_PATH}/{name}", dynamo_shaped(ours[name], live[name]))
            rest.patch(
                f"{CRD_PATH}/{name}/status",
                {"status": {"storedVersions": ["v1alpha1", "v1beta1"]}},
            )
        beta = convert(runnable("tk-beta"), "v1beta1")
        beta["metadata"].pop("annotations", None)  # written natively at v1beta1
        for component in beta["spec"]["components"]:
            if component["name"] == "worker":
                component["scalingAdapter"] = {}  # v1beta1: present means enabled
        alpha = runnable("tk-alpha")
        alpha["spec"]["services"]["worker"]["annotations"] = {"team": "inference"}
        stored_alpha = convert(alpha, "v1beta1")  # as Dynamo's webhook stores it
        assert ANNOTATION_DGD_SPEC in stored_alpha["metadata"]["annotations"]
        before = {
            doc["metadata"]["name"]: rest.post(B1.format(ns=namespace, plural=DGDS), doc)
            for doc in (beta, stored_alpha)
        }
        wait_for(
            lambda: not _conversion_served(rest, namespace, "tk-beta"),
            timeout=30,
            description="Dynamo's CRD (no conversion) in effect",
        )

        # --- ours installed
        first, second, migrated = asyncio.run(_install_ours(crds, client_config))
        assert set(first) == set(CONVERTED)  # Dynamo's CRDs replaced in place...
        assert second == [], _differences(rest, ours, client_config)  # ...a restart writes nothing
        assert migrated >= 2
        for name in CONVERTED:
            crd = rest.get(f"{CRD_PATH}/{name}")
            assert crd["status"]["storedVersions"] == ["v1beta1"]
            assert crd["spec"]["conversion"]["strategy"] == "Webhook"
            assert crd["metadata"]["annotations"]["controller-gen.kubebuilder.io/version"]
        wait_for(
            lambda: _conversion_served(rest, namespace, "tk-beta"),
            timeout=30,
            description="our conversion webhook in effect",
        )

        # --- objects preserved, and read the same in both versions
        for name, created in before.items():
            hub = rest.get(f"{B1.format(ns=namespace, plural=DGDS)}/{name}")
            assert user_view(hub) == user_view(created)
            spoke = rest.get(f"{A1.format(ns=namespace, plural=DGDS)}/{name}")
            assert user_view(spoke) == user_view(convert(hub, "v1alpha1"))
            assert user_view(convert(spoke, "v1beta1")) == user_view(hub)
        spoke = rest.get(f"{A1.format(ns=namespace, plural=DGDS)}/tk-alpha")
        assert spoke["spec"] == alpha["spec"]  # the alpha-only annotation came back

        # --- reconciled by our operator, status and adapters at the storage version
        with running_operator(namespace):
            for name in before:
                hub = wait_for(
                    lambda name=name: _ready(rest, namespace, name),
                    timeout=120,
                    description=f"{name} Ready",
                )
                # Workers run as a generation `<dgd>-worker-<hash>` (managed rollouts).
                [deployment] = hub["status"]["components"]["worker"]["componentNames"]
                assert re.fullmatch(rf"{name}-worker-[0-9a-f]{{8}}", deployment), deployment
                rest.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}")
            adapter = rest.get(f"{B1.format(ns=namespace, plural=DGDSAS)}/tk-beta-worker")
            assert adapter["spec"]["dgdRef"] == {"name": "tk-beta", "componentName": "worker"}
            old = rest.get(f"{A1.format(ns=namespace, plural=DGDSAS)}/tk-beta-worker")
            assert old["spec"]["dgdRef"] == {"name": "tk-beta", "serviceName": "worker"}
        for name, created in before.items():
            hub = rest.get(f"{B1.format(ns=namespace, plural=DGDS)}/{name}")
            assert hub["spec"] == created["spec"]  # the operator changed no spec
    finally:
        # Our CRDs back as the session had them, whatever happened above.
        asyncio.run(_install_ours(crds, client_config))


def test_the_operator_reconciles_while_no_conversion_webhook_answers(
    control_plane: ControlPlane, namespace: str
) -> None:
    """The operator reads, watches and writes at the storage version: a dead conversion webhook
    (Dynamo's gone, ours not yet up) breaks v1alpha1 readers only, never the reconcile."""
    rest = control_plane.rest
    crd_path = f"{CRD_PATH}/{CONVERTED[0]}"
    live = rest.get(crd_path)["spec"]["conversion"]["webhook"]["clientConfig"]
    dead = f"https://127.0.0.1:{free_port()}/convert"
    rest.patch(crd_path, {"spec": {"conversion": {"webhook": {"clientConfig": {"url": dead}}}}})
    try:
        hub = convert(runnable("dark"), "v1beta1")
        hub["metadata"].pop("annotations", None)
        rest.post(B1.format(ns=namespace, plural=DGDS), hub)

        def conversion_down() -> bool:
            try:
                rest.get(f"{A1.format(ns=namespace, plural=DGDS)}/dark")
            except ApiError:
                return True
            return False

        wait_for(conversion_down, timeout=30, description="the dead conversion URL in effect")
        with running_operator(namespace):
            ready = wait_for(
                lambda: _ready(rest, namespace, "dark"), timeout=120, description="dark Ready"
            )
        assert ready["status"]["components"]["worker"]["readyReplicas"] == 2
    finally:
        rest.patch(crd_path, {"spec": {"conversion": {"webhook": {"clientConfig": live}}}})
        wait_for(
            lambda: _conversion_served(rest, namespace, "dark"),
            timeout=30,
            description="conversion restored",
        )
