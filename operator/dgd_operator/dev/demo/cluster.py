"""The cluster the demo runs on: a running `dgd dev` cluster, or a control plane of its own."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from dgd_operator.dev import binaries
from dgd_operator.dev import session as dev_session
from dgd_operator.dev.controlplane import ControlPlane, ControlPlaneError
from dgd_operator.dev.demo.graph import DemoError, say
from dgd_operator.dev.demo.options import short_path
from dgd_operator.dev.rest import ApiError, KubeRest

DEMO_NODES = 2
DEMO_GPUS_PER_NODE = 8


@dataclass
class Cluster:
    """The cluster the demo runs on, and whether the demo started it (then it stops it)."""

    plane: ControlPlane
    state_dir: Path
    ours: bool
    how: str

    @property
    def rest(self) -> KubeRest:
        """Admin REST client of the cluster."""
        return self.plane.rest


def running(plane: ControlPlane) -> bool:
    """Whether every process of `plane` is alive and its API server answers."""
    alive = plane.alive()
    return bool(alive) and all(alive.values()) and plane.api_ready()


def acquire_cluster(state_dir: Path, *, reuse_dev: bool, nodes: int = DEMO_NODES) -> Cluster:
    """A running `dgd dev` cluster (reused as is), else a demo cluster of our own with
    ``nodes`` GPU nodes (at least :data:`DEMO_NODES`)."""
    nodes = max(nodes, DEMO_NODES)
    if reuse_dev:
        dev_dir = dev_session.state_dir(None)
        dev = ControlPlane.attach(dev_dir)
        if dev is not None and running(dev):
            how = f"your running `dgd dev` cluster ({short_path(dev_dir)}); it stays up afterwards"
            return Cluster(dev, dev_dir, ours=False, how=how)
    leftover = ControlPlane.attach(state_dir)
    if leftover is not None:
        if running(leftover) and leftover.kubeconfig.exists():
            how = f"the demo cluster a previous `--keep` run left in {short_path(state_dir)}"
            return Cluster(leftover, state_dir, ours=True, how=how)
        leftover.stop()
    bins = binaries.find()
    if bins is None:
        say(
            f"Kubernetes {binaries.KUBE_VERSION} binaries are not built yet; building them once "
            "(about 5-8 minutes on 2 cores)."
        )
        try:
            bins = binaries.ensure(progress=lambda msg: say(f"  {msg}"))
        except binaries.BinariesMissingError as exc:
            raise DemoError(str(exc)) from exc
    plane = ControlPlane(
        state_dir,
        binaries=bins,
        nodes=nodes,
        gpus_per_node=DEMO_GPUS_PER_NODE,
        kubelet="process",
        execute_pods=True,
    )
    began = time.monotonic()
    say(
        f"Starting a local Kubernetes {bins.version} control plane with {nodes} simulated "
        f"GPU nodes ({DEMO_GPUS_PER_NODE} GPUs each) in {short_path(state_dir)} ..."
    )
    try:
        plane.start(timeout=120.0)
        plane.install_crds()
    except (ControlPlaneError, ApiError, TimeoutError, OSError) as exc:
        plane.stop()
        raise DemoError(f"the local control plane did not start: {exc}") from exc
    how = f"a new local control plane (started in {time.monotonic() - began:.1f}s)"
    return Cluster(plane, state_dir, ours=True, how=how)


def ensure_namespace(rest: KubeRest, namespace: str, timeout: float = 120.0) -> None:
    """Create ``namespace`` if missing (waiting out an earlier run's deletion) and wait for its
    default ServiceAccount (pods need it)."""
    deadline = time.monotonic() + timeout
    waited = False
    while True:
        try:
            rest.post("/api/v1/namespaces", {"metadata": {"name": namespace}})
            break
        except ApiError as exc:
            if exc.status != 409:
                raise
        current = rest.get(f"/api/v1/namespaces/{namespace}")
        if not current["metadata"].get("deletionTimestamp"):
            break
        if time.monotonic() > deadline:
            raise DemoError(f"namespace {namespace} is still being deleted; try again in a minute")
        if not waited:
            say(
                f"Waiting for namespace {namespace} (left by an earlier demo) to finish deleting ..."
            )
            waited = True
        time.sleep(0.5)
    while not rest.exists(f"/api/v1/namespaces/{namespace}/serviceaccounts/default"):
        if time.monotonic() > deadline:
            raise DemoError(f"namespace {namespace} got no default ServiceAccount in {timeout:g}s")
        time.sleep(0.1)
