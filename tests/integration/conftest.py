"""Integration tier: one real control plane per test session.

Fixtures:

* ``control_plane`` (session): etcd + kube-apiserver + kube-controller-manager + kube-scheduler
  + simulated GPU nodes (fake kubelet in a thread), with dgd's CRDs installed. Attributes:
  ``.kubeconfig`` (Path; also ``$KUBECONFIG``), ``.api_url``, ``.node_names``,
  ``.gpus_per_node``, ``.rest``; methods ``.fail_pod(ns, name, reason)``,
  ``.restart_container(ns, name, container=None)``. Stopped at session end; teardown asserts
  that no process of it is left. Do not call its ``stop()``.
* ``namespace``: a fresh namespace per test (its ``default`` ServiceAccount exists), deleted
  afterwards without waiting.
* ``kube_binaries`` (session): the binaries (skip/fail as below when missing).
* ``kube_api`` (session): :class:`tests.helpers.KubeApi` (kubernetes client APIs + ``rest``).
* ``pool_nodes``: ``add(count, gpus_per_node=..., labels=..., spreads=..., extended_resources=...)``
  adds simulated nodes that only this test's pods can use (tainted and labelled
  ``dgd.dev/test-pool=<namespace>``; pods need that nodeSelector and toleration). Removed, with
  the namespace's pods, after the test.

The cluster serves the PodGroup API (gang scheduling) when the binaries are Kubernetes >= 1.37:
``control_plane.pod_group_api``.

In CI (``CI=true``) a control plane that cannot start fails the tests; locally, missing binaries
skip them with instructions.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import KubeApi, make_kube_api, wait_for
from tests.integration.node_pools import POOL_KEY, AddNodes

from dgd_operator.dev import binaries
from dgd_operator.dev.controlplane import ControlPlane, ControlPlaneError
from dgd_operator.dev.kubelet import NodePlan
from dgd_operator.dev.rest import ApiError


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def kube_binaries() -> binaries.KubeBinaries:
    """The control-plane binaries; skips (locally) or fails (CI) with build instructions."""
    message = (
        f"Kubernetes {binaries.KUBE_VERSION} control-plane binaries are not built. Build them "
        "once with `make kube-bins` (or `.venv/bin/python -m dgd_operator.dev.binaries "
        "ensure`; ~5-8 min on 2 cores), or set KUBEBUILDER_ASSETS to envtest binaries."
    )
    try:
        found = binaries.find()
    except binaries.BinariesMissingError as exc:
        found, message = None, str(exc)
    if found is None:
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def control_plane(kube_binaries: binaries.KubeBinaries) -> Iterator[ControlPlane]:
    """A running local cluster with simulated GPU nodes and dgd's CRDs (see module doc)."""
    found = kube_binaries
    kubeconfig = Path(os.environ["KUBECONFIG"])
    plane = ControlPlane(
        kubeconfig.parent / "control-plane", binaries=found, kubeconfig=kubeconfig, kubelet="thread"
    )
    try:
        plane.start()  # also installs dgd's CRDs from crds/
    except (ControlPlaneError, ApiError, TimeoutError, OSError) as exc:
        plane.stop()
        pytest.fail(f"the local control plane did not start: {exc}", pytrace=False)
    try:
        yield plane
    finally:
        procs = plane.processes()
        leftovers = plane.stop()
        plane.remove_data()  # ~60 MB of etcd files; logs stay for a failed session
        still_alive = [f"{p.name} (pid {p.pid})" for p in procs if p.alive()]
        assert not leftovers and not still_alive, (
            f"control-plane processes left running: {leftovers or still_alive}"
        )


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "t"


@pytest.fixture()
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted afterwards (not awaited)."""
    name = f"{_slug(request.node.name, 45)}-{uuid.uuid4().hex[:6]}"
    rest = control_plane.rest
    rest.post(
        "/api/v1/namespaces",
        {"metadata": {"name": name, "labels": {"dgd.dev/test": "true"}}},
    )
    # Pods are rejected until the ServiceAccount admission plugin finds `default`.
    if control_plane.has_controllers:
        wait_for(
            lambda: control_plane.rest_exists(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
            timeout=30,
            description=f"ServiceAccount {name}/default created by kube-controller-manager",
        )
    yield name
    try:
        rest.delete(f"/api/v1/namespaces/{name}", propagationPolicy="Background")
    except ApiError as exc:
        if exc.status != 404:
            raise


@pytest.fixture(scope="session")
def kube_api(control_plane: ControlPlane) -> Iterator[KubeApi]:
    """Kubernetes client APIs (core, apps, custom, apiext) and dgd's JSON client, for the test
    cluster."""
    api = make_kube_api(control_plane.kubeconfig)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture()
def pool_nodes(control_plane: ControlPlane, namespace: str) -> Iterator[AddNodes]:
    """``add(count, **node_plans kwargs)``: nodes only this test's pods can use. Teardown
    deletes the namespace's pods at once (nothing finalises pods on removed nodes) and then the
    nodes."""
    added: list[str] = []

    def add(count: int, **kwargs: Any) -> list[NodePlan]:
        plans = control_plane.add_nodes(
            count,
            prefix=f"pool-{namespace[-6:]}",
            labels={POOL_KEY: namespace, **kwargs.pop("labels", {})},
            taints=[{"key": POOL_KEY, "value": namespace, "effect": "NoSchedule"}],
            **kwargs,
        )
        added.extend(plan.name for plan in plans)
        return plans

    yield add
    rest = control_plane.rest
    # Nothing finalises a pod once its node is gone, and a terminating namespace then never
    # finishes (later tests wait for none). So: no controller may recreate pods (workloads
    # first), then the pods go at once and are awaited while the pool still exists.
    for collection in (
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        f"/apis/apps/v1/namespaces/{namespace}/statefulsets",
        f"/apis/apps/v1/namespaces/{namespace}/replicasets",
    ):
        rest.request("DELETE", collection, params={"gracePeriodSeconds": 0})

    def pods_gone() -> bool:
        path = f"/api/v1/namespaces/{namespace}/pods"
        if not rest.get(path).get("items"):
            return True
        rest.request("DELETE", path, params={"gracePeriodSeconds": 0})
        return False

    wait_for(pods_gone, timeout=60, interval=0.5, description=f"no pod left in {namespace}")
    if added:
        control_plane.remove_nodes(added)
