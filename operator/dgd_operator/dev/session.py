"""The user-facing side of the local cluster: what `dgd dev up|status|kubeconfig|down` do.

`up` starts every component detached (PID files in the state directory), so the cluster
outlives the command; `down` stops them by PID (apiserver before etcd) and removes the state.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from dgd_operator.dev import access, binaries
from dgd_operator.dev.controlplane import ControlPlane, ControlPlaneError
from dgd_operator.dev.kubelet import (
    NodePlan,
    node_plans,
    parse_key_value,
    parse_node_label,
    parse_spread,
    parse_taint,
)
from dgd_operator.dev.rest import ApiError, KubeRest


def state_dir(args: argparse.Namespace | None = None) -> Path:
    """``--state-dir``, else ``$DGD_DEV_STATE``, else ``$XDG_STATE_HOME/dgd/dev`` or
    ``~/.local/state/dgd/dev``."""
    explicit = getattr(args, "state_dir", None) if args is not None else None
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("DGD_DEV_STATE")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "dgd" / "dev"


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """Serialise `up` and `down` on one state directory (a lock file next to it)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with (directory.parent / f".{directory.name}.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(f"Another `dgd dev` command is working on {directory}; waiting for it.")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _say(message: str) -> None:
    print(message, flush=True)


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _running(plane: ControlPlane) -> bool:
    alive = plane.alive()
    return bool(alive) and all(alive.values()) and plane.api_ready()


def _shape_text(plane: ControlPlane) -> str:
    """Lines for node labels, taints and extended resources that differ from the defaults."""
    lines = []
    for plan in plane.node_plans:
        extras = [f"{k}={v}" for k, v in plan.labels.items()]
        extras += [
            f"taint {t['key']}{'=' + t['value'] if t.get('value') else ''}:{t['effect']}"
            for t in plan.taints
        ]
        extras += [f"{k}: {v}" for k, v in plan.extended_resources.items()]
        if extras:
            lines.append(f"    {plan.name}: {', '.join(extras)}\n")
    return "".join(lines)


def _usage_text(plane: ControlPlane) -> str:
    kubeconfig = plane.kubeconfig
    return (
        f"  API server:  {plane.api_url}\n"
        f"  kubeconfig:  {kubeconfig}\n"
        f"  nodes:       {', '.join(plane.node_names) or '(none)'}"
        f" ({plane.gpus_per_node} nvidia.com/gpu each)\n"
        f"{_shape_text(plane)}"
        f"  logs:        {plane.logs_dir()}\n"
        f"{_exec_text(plane)}"
        "\n"
        "Use it with kubectl:\n"
        f"  export KUBECONFIG={kubeconfig}\n"
        "  kubectl get nodes\n"
        f"or per command: kubectl --kubeconfig {kubeconfig} get nodes\n"
        "\n"
        "Stop it with: dgd dev down"
    )


def _exec_text(plane: ControlPlane) -> str:
    if not plane.execute_pods:
        return "  pods:        simulated (no process runs; started with --simulate-only)\n"
    return (
        "  pods:        known commands run as local processes (our runtime; Dynamo's with the\n"
        "               mock engine); logs: kubectl logs POD (or dgd dev logs POD)\n"
        f"  NATS:        {plane.nats_url}\n"
        "\n"
        "Run the operator against it (pods get NATS_SERVER from it):\n"
        f"  DGD_NATS_ADDRESS={plane.nats_url} KUBECONFIG={plane.kubeconfig} dgd operator\n"
        "Reach a frontend: dgd dev port-forward -n NS svc/<graph>-frontend 8000\n"
    )


def node_shape(args: argparse.Namespace) -> list[NodePlan]:
    """The nodes `dgd dev up` asked for: count and GPUs, labels, spreads, taints and extended
    resources (a ValueError names a malformed flag)."""
    labels: dict[str, str] = {}
    per_node: dict[int, dict[str, str]] = {}
    for text in getattr(args, "node_labels", []):
        positions, key, value = parse_node_label(text)
        if positions is None:
            labels[key] = value
        for position in positions or ():
            per_node.setdefault(position, {})[key] = value
    spreads = dict(parse_spread(text) for text in getattr(args, "spread", []))
    taints = [parse_taint(text) for text in getattr(args, "taint", [])]
    extended = dict(
        parse_key_value(text, "extended resource")
        for text in getattr(args, "extended_resources", [])
    )
    return node_plans(
        args.nodes,
        args.gpus_per_node,
        labels=labels,
        per_node=per_node,
        spreads=spreads,
        taints=taints,
        extended_resources=extended,
    )


def up(args: argparse.Namespace) -> int:
    """Start the local cluster, or report the one already running. Exit 0 when it runs."""
    directory = state_dir(args)
    with _exclusive(directory):
        return _up(args, directory)


def _up(args: argparse.Namespace, directory: Path) -> int:
    existing = ControlPlane.attach(directory)
    if existing is not None:
        if _running(existing):
            _say(f"The dgd dev cluster is already running (state in {directory}).")
            _say(_usage_text(existing))
            return 0
        _say("Found a stale or partly stopped dgd dev cluster; stopping what is left of it.")
        existing.stop()
    started = time.monotonic()
    try:
        if binaries.find() is None:
            _say(
                f"Kubernetes {binaries.KUBE_VERSION} binaries are not built yet. Building them now "
                "(once per machine, about 5-8 minutes on 2 cores)."
            )
        shape = node_shape(args)
        bins = binaries.ensure(progress=_say)
        plane = ControlPlane(
            directory,
            binaries=bins,
            node_shape=shape,
            gang_scheduling=not getattr(args, "no_gang_scheduling", False),
            kubelet="process",
            crds=not args.no_crds,
            execute_pods=not getattr(args, "simulate_only", False),
            progress=lambda msg: _say(f"  {msg}"),
        )
    except (binaries.BinariesMissingError, ValueError) as exc:
        _err(f"error: {exc}")
        return 1
    _say(f"Starting the dgd dev cluster (Kubernetes {bins.version}) in {directory}")
    try:
        plane.start(timeout=args.timeout)
        crds = plane.installed_crds
    except (ControlPlaneError, ApiError, TimeoutError, OSError) as exc:
        plane.stop()
        _err(f"error: the dgd dev cluster did not start: {exc}")
        _err(f"Logs are in {plane.logs_dir()}.")
        return 1
    elapsed = time.monotonic() - started
    _say(f"The dgd dev cluster is up ({elapsed:.1f}s).")
    if plane.pod_group_api is not None:
        _say(f"  gang scheduling: on (PodGroup {plane.pod_group_api.api_version})")
    else:
        _say("  gang scheduling: off (the PodGroup API is not served)")
    if crds:
        _say(f"  CRDs:        {', '.join(crds)}")
    elif not args.no_crds:
        _say("  CRDs:        none found (set DGD_CRDS_DIR to a directory of CRD YAML files)")
    _say(_usage_text(plane))
    return 0


def status(args: argparse.Namespace) -> int:
    """Print the cluster's state; exit 0 if it runs, 3 if not."""
    directory = state_dir(args)
    plane = ControlPlane.attach(directory)
    if plane is None:
        _say(f"No dgd dev cluster (nothing in {directory}). Start one with: dgd dev up")
        return 3
    running = _running(plane)
    _say(f"dgd dev cluster: {'running' if running else 'NOT running'} (state in {directory})")
    for proc in plane.processes():
        _say(f"  {proc.name:<24} pid {proc.pid:<8} {'running' if proc.alive() else 'stopped'}")
    if running:
        _say(f"  nodes Ready: {'yes' if plane.nodes_ready() else 'no'}")
        _say(_usage_text(plane))
        return 0
    _say("Clean up with: dgd dev down")
    return 3


def kubeconfig(args: argparse.Namespace) -> int:
    """Print only the kubeconfig path (for `$(dgd dev kubeconfig)`); exit 1 if none."""
    plane = ControlPlane.attach(state_dir(args))
    if plane is None or not plane.kubeconfig.exists():
        _err("No dgd dev cluster is running. Start one with: dgd dev up")
        return 1
    print(plane.kubeconfig)
    return 0


def down(args: argparse.Namespace) -> int:
    """Stop every process of the cluster by PID and remove the state directory."""
    directory = state_dir(args)
    with _exclusive(directory):
        return _down(directory)


def _down(directory: Path) -> int:
    plane = ControlPlane.attach(directory)
    if plane is None:
        _say(f"No dgd dev cluster to stop (nothing in {directory}).")
        if directory.exists() and not any(directory.iterdir()):
            directory.rmdir()
        return 0
    names = [p.name for p in plane.processes() if p.alive()]
    leftovers = plane.stop()
    if leftovers:
        _err(f"error: could not stop: {', '.join(leftovers)}; state kept in {directory}")
        return 1
    shutil.rmtree(directory, ignore_errors=True)
    _say(
        f"Stopped {', '.join(names) if names else 'nothing (no process was running)'}; removed {directory}."
    )
    return 0


def _attached_rest(args: argparse.Namespace) -> tuple[ControlPlane, KubeRest] | None:
    plane = ControlPlane.attach(state_dir(args))
    if plane is None or not plane.kubeconfig.exists():
        _err("No dgd dev cluster is running. Start one with: dgd dev up")
        return None
    return plane, KubeRest.from_kubeconfig(plane.kubeconfig)


def logs(args: argparse.Namespace) -> int:
    """Print an executed pod's container log (what `kubectl logs` would show)."""
    attached = _attached_rest(args)
    if attached is None:
        return 1
    plane, rest = attached
    try:
        return access.show_logs(
            rest, plane.state_dir, args.namespace, args.pod, args.container, follow=args.follow
        )
    except access.AccessError as exc:
        _err(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


def port_forward(args: argparse.Namespace) -> int:
    """Proxy a local port to a Service's (or pod's) loopback endpoint until interrupted."""
    attached = _attached_rest(args)
    if attached is None:
        return 1
    _, rest = attached
    local, _, remote = args.ports.partition(":")
    try:
        local_port, remote_port = int(local), int(remote or local)
    except ValueError:
        _err(f"error: ports {args.ports!r} are not [LOCAL:]REMOTE numbers")
        return 2
    try:
        asyncio.run(access.forward(rest, args.namespace, args.resource, local_port, remote_port))
    except (access.AccessError, ApiError, OSError) as exc:
        _err(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
