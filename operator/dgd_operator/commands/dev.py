"""`dgd dev up|status|kubeconfig|down`: a local Kubernetes control plane with simulated GPU nodes.

Only the standard library is imported here; the implementation lives in
``dgd_operator.dev.session`` and is imported when a subcommand runs.
"""

from __future__ import annotations

import argparse
from typing import Any

HELP = "run a local Kubernetes control plane with simulated GPU nodes"
DESCRIPTION = """\
Run a local Kubernetes control plane for trying dgd without a real cluster: etcd,
kube-apiserver, kube-controller-manager and kube-scheduler on 127.0.0.1, plus simulated GPU
nodes (a small fake kubelet of ours makes pods Running and Ready). dgd's CRDs are installed.

The Kubernetes binaries are built once from the Go module proxy into ~/.cache/dgd (about
5-8 minutes on 2 cores; needs Go >= 1.24). KUBEBUILDER_ASSETS pointing at envtest binaries
skips the build.

State (PID files, logs, certificates, kubeconfig) lives in $DGD_DEV_STATE, default
~/.local/state/dgd/dev.
"""
EPILOG = """\
examples:
  dgd dev up                           start (or report) the local cluster
  dgd dev up --nodes 2 --gpus-per-node 4
  kubectl --kubeconfig "$(dgd dev kubeconfig)" get nodes
  dgd dev status
  dgd dev down                         stop everything and remove the state directory
"""


def register(subparsers: Any) -> None:
    """Add the `dev` subcommand and its actions."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dev",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="where PID files, logs and the kubeconfig live (default: $DGD_DEV_STATE or "
        "~/.local/state/dgd/dev)",
    )
    actions = parser.add_subparsers(dest="dev_action", metavar="ACTION")
    up = actions.add_parser("up", help="start the local cluster (reports it if already running)")
    up.add_argument(
        "--nodes", type=int, default=4, metavar="N", help="simulated GPU nodes (default 4)"
    )
    up.add_argument(
        "--gpus-per-node",
        type=int,
        default=8,
        metavar="G",
        help="nvidia.com/gpu capacity of each node (default 8)",
    )
    up.add_argument("--no-crds", action="store_true", help="do not install dgd's CRDs")
    up.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="startup timeout (default 120)",
    )
    status = actions.add_parser("status", help="show whether the cluster runs, and its components")
    path = actions.add_parser("kubeconfig", help="print the admin kubeconfig path (nothing else)")
    down = actions.add_parser("down", help="stop every process `dgd dev up` started and clean up")
    for action in (up, status, path, down):
        # Also accepted after the action; SUPPRESS keeps an absent one from erasing `dev --state-dir`.
        action.add_argument(
            "--state-dir", metavar="DIR", default=argparse.SUPPRESS, help="as for `dgd dev`"
        )
    parser.set_defaults(func=run, _dev_parser=parser)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action; returns the exit code."""
    action = getattr(args, "dev_action", None)
    if action is None:
        args._dev_parser.print_help()
        return 2
    from dgd_operator.dev import session

    handler = {
        "up": session.up,
        "status": session.status,
        "kubeconfig": session.kubeconfig,
        "down": session.down,
    }[action]
    return handler(args)
