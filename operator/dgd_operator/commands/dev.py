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

Pods whose command the kubelet knows (our runtime's `python -m dgd_runtime.worker|frontend`,
and NVIDIA Dynamo's `python3 -m dynamo.frontend|vllm|sglang|trtllm`, mapped to our runtime with
the mock engine) really run, as local processes on a loopback address per pod (127.244.N.H for
pod IP 10.244.N.H), with their probes and restarts; a nats-server runs for them and PVCs bind
to directories in the state directory. Other pods are simulated (an Event says so).

The Kubernetes binaries (v1.37, with the scheduler's gang scheduling on) are built once from
the Go module proxy into ~/.cache/dgd (about 10-15 minutes on 2 busy cores; needs Go >= 1.26).
KUBEBUILDER_ASSETS pointing at envtest binaries skips the build.

Nodes can be shaped to try placement locally: labels on every node, a label spread over the
nodes in blocks (topology domains such as racks), taints and extended resources.

State (PID files, logs, certificates, kubeconfig) lives in $DGD_DEV_STATE, default
~/.local/state/dgd/dev.
"""
EPILOG = """\
examples:
  dgd dev up                           start (or report) the local cluster
  dgd dev up --nodes 2 --gpus-per-node 4
  dgd dev up --nodes 8 --spread topology.kubernetes.io/rack=a,b   two racks of 4 nodes
  dgd dev up --nodes 3 --node-label 0,1:rack=a --node-label 2:rack=b
  dgd dev up --node-label nvidia.com/gpu.clique=c0 --extended-resources rdma/ib=8
  dgd dev up --taint dedicated=inference:NoSchedule
  kubectl --kubeconfig "$(dgd dev kubeconfig)" get nodes
  dgd dev status
  dgd dev logs -n demo qwen-agg-worker-5d9c-xk2p1 -f
  dgd dev port-forward -n demo svc/qwen-agg-frontend 8000
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
    up.add_argument(
        "--node-label",
        "--node-labels",
        dest="node_labels",
        action="append",
        default=[],
        metavar="[I,J:]KEY=VALUE",
        help="label every node, or only the nodes at positions I,J (from 0), e.g. 0,1:rack=a "
        "(repeatable)",
    )
    up.add_argument(
        "--spread",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="spread a label over the nodes in consecutive blocks, one per value, e.g. "
        "racks (repeatable)",
    )
    up.add_argument(
        "--taint",
        action="append",
        default=[],
        metavar="KEY[=VALUE]:EFFECT",
        help="taint every node (repeatable; pods need a matching toleration)",
    )
    up.add_argument(
        "--extended-resource",
        "--extended-resources",
        dest="extended_resources",
        action="append",
        default=[],
        metavar="NAME=QUANTITY",
        help="advertise an extended resource on every node, e.g. rdma/ib=8 (repeatable)",
    )
    up.add_argument(
        "--no-gang-scheduling",
        action="store_true",
        help="do not serve the PodGroup API (gang scheduling off, as on older clusters)",
    )
    up.add_argument("--no-crds", action="store_true", help="do not install dgd's CRDs")
    up.add_argument(
        "--simulate-only",
        action="store_true",
        help="do not run pods' commands as local processes (pods only look Running), and "
        "start no nats-server",
    )
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
    logs = actions.add_parser(
        "logs", help="print an executed pod's container log (what kubectl logs shows)"
    )
    logs.add_argument("pod", metavar="POD")
    logs.add_argument("-n", "--namespace", default="default")
    logs.add_argument("-c", "--container", default=None, help="default: the first container")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    forward = actions.add_parser(
        "port-forward",
        help="proxy 127.0.0.1:LOCAL to a Service's ready pod (or a pod), like kubectl port-forward",
    )
    forward.add_argument("resource", metavar="svc/NAME|pod/NAME")
    forward.add_argument("ports", metavar="[LOCAL:]REMOTE")
    forward.add_argument("-n", "--namespace", default="default")
    for action in (up, status, path, down, logs, forward):
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
        "logs": session.logs,
        "port-forward": session.port_forward,
    }[action]
    return handler(args)
