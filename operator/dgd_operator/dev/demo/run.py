"""The demo's sequence: graph, cluster, operator, apply, wait, report; and the cleanup."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from dgd_operator.dev import processes
from dgd_operator.dev import session as dev_session
from dgd_operator.dev.controlplane import ControlPlane
from dgd_operator.dev.demo import needs, options
from dgd_operator.dev.demo.cluster import (
    DEMO_GPUS_PER_NODE,
    Cluster,
    acquire_cluster,
    ensure_namespace,
    running,
)
from dgd_operator.dev.demo.graph import DemoError, Graph, display_path, load_graph, say
from dgd_operator.dev.demo.options import short_path
from dgd_operator.dev.demo.report import explore_lines, report
from dgd_operator.dev.demo.serve import serve_and_disrupt
from dgd_operator.dev.demo.watch import apply_dgd, wait_ready
from dgd_operator.dev.operator_process import (
    OPERATOR,
    OperatorProcess,
    OperatorStartError,
    start_operator,
)
from dgd_operator.dev.rest import ApiError
from dgd_operator.settings import OperatorSettings


def cleanup(
    cluster: Cluster | None, operator: OperatorProcess | None, graph: Graph | None
) -> list[str]:
    """Stop what the demo started; returns what could not be stopped."""
    leftovers: list[str] = []
    if operator is not None and not operator.stop():
        leftovers.append(f"{OPERATOR} (pid {operator.proc.pid})")
    if cluster is None:
        return leftovers
    if cluster.ours:
        leftovers += cluster.plane.stop()
        if not leftovers:
            shutil.rmtree(cluster.state_dir, ignore_errors=True)
    elif graph is not None:
        with contextlib.suppress(ApiError, OSError):
            cluster.rest.delete(
                f"/api/v1/namespaces/{graph.namespace}", propagationPolicy="Background"
            )
    return leftovers


def down(state_dir: Path, namespace: str) -> int:
    """Stop what a `--keep` run left: the operator, then the demo cluster (or the namespace)."""
    stopped: list[str] = []
    operator = processes.load(OPERATOR, state_dir / "run", state_dir / "logs")
    if operator is not None:
        if not processes.stop(operator, state_dir / "run"):
            say(f"error: could not stop {OPERATOR} (pid {operator.pid})")
            return 1
        stopped.append(f"the operator (pid {operator.pid})")
    plane = ControlPlane.attach(state_dir)
    if plane is not None:
        leftovers = plane.stop()
        if leftovers:
            say(f"error: could not stop {', '.join(leftovers)}; state kept in {state_dir}")
            return 1
        stopped.append("the demo control plane")
    else:
        dev = ControlPlane.attach(dev_session.state_dir(None))
        if dev is not None and running(dev):
            with contextlib.suppress(ApiError, OSError):
                dev.rest.delete(f"/api/v1/namespaces/{namespace}", propagationPolicy="Background")
                stopped.append(f"namespace {namespace} in your `dgd dev` cluster (deleting)")
    shutil.rmtree(state_dir, ignore_errors=True)
    say(f"Stopped {' and '.join(stopped) if stopped else 'nothing (no kept demo found)'}.")
    return 0


def _create_missing(cluster: Cluster, graph: Graph) -> list[str]:
    """Create the PVCs and Secrets the graph's pods use but neither it nor the cluster has."""
    created = []
    for obj in needs.missing_objects(graph.rendered, graph.namespace):
        plural = "persistentvolumeclaims" if obj["kind"] == "PersistentVolumeClaim" else "secrets"
        path = f"/api/v1/namespaces/{graph.namespace}/{plural}"
        if cluster.rest.exists(f"{path}/{obj['metadata']['name']}"):
            continue
        cluster.rest.post(path, obj)
        created.append(needs.describe(obj))
    return created


@contextlib.contextmanager
def _timer() -> Iterator[Callable[[], float]]:
    began = time.monotonic()
    yield lambda: time.monotonic() - began


def run(args: argparse.Namespace) -> int:
    """The demo; returns the exit code (0 when the DGD got Ready)."""
    state_dir: Path = args.state_dir
    if args.down:
        return down(state_dir, args.namespace)
    cluster: Cluster | None = None
    operator: OperatorProcess | None = None
    graph: Graph | None = None
    kept = ok = False
    with _timer() as elapsed:
        try:
            graph = load_graph(args.dgd, args.namespace)
            say(
                f"dgd demo: DynamoGraphDeployment {graph.name} ({', '.join(graph.services)}) "
                f"from {display_path(graph.source)}"
            )
            nodes = needs.gpu_nodes_needed(graph.rendered, DEMO_GPUS_PER_NODE)
            cluster = acquire_cluster(state_dir, reuse_dev=not args.own_cluster, nodes=nodes)
            say(f"Cluster: {cluster.how}.")
            ensure_namespace(cluster.rest, graph.namespace)
            created = _create_missing(cluster, graph)
            if created:
                say(
                    f"Created what the recipe expects to exist: {', '.join(created)} "
                    "(placeholders; the mock engine needs no model files or token)."
                )
            with _timer() as op_elapsed:
                operator = start_operator(
                    cluster.plane.kubeconfig,
                    OperatorSettings(
                        watch_namespaces=(graph.namespace,),
                        nats_address=cluster.plane.nats_url or None,
                    ),
                    run_dir=state_dir / "run",
                    log_dir=state_dir / "logs",
                )
            say(
                f"Operator: `dgd operator` (pid {operator.proc.pid}) watching namespace "
                f"{graph.namespace}, ready in {op_elapsed():.1f}s; log: {short_path(operator.log)}"
            )
            apply_dgd(cluster.rest, graph)
            say(
                f"Applied {graph.name} to namespace {graph.namespace}; waiting until it is Ready "
                f"(timeout {args.timeout:g}s):"
            )
            with _timer() as wait_elapsed:
                obj = wait_ready(cluster.rest, graph, operator, args.timeout)
            say(f"{graph.name} is Ready: {wait_elapsed():.1f}s after apply.")
            say()
            for line in report(cluster.rest, graph, obj):
                say(line)
            say()
            if cluster.plane.execute_pods:
                serve_and_disrupt(cluster.rest, graph, args.timeout)
                say()
            else:
                say("The cluster simulates its pods (started without executing them): no requests.")
            ok = True
            if args.keep:
                kept = True
                for line in explore_lines(cluster, graph, operator):
                    say(line)
            return 0
        except (DemoError, OperatorStartError) as exc:
            say()
            say(f"dgd demo failed: {exc}")
            return 1
        except (ApiError, OSError) as exc:
            say()
            say(f"dgd demo failed: the cluster refused a request: {exc}")
            return 1
        except KeyboardInterrupt:
            say("\ninterrupted")
            return 130
        finally:
            if not kept:
                leftovers = cleanup(cluster, operator, graph)
                if leftovers:
                    say(f"error: could not stop {', '.join(leftovers)}")
                elif cluster is not None:
                    what = "the operator and the control plane" if cluster.ours else "the operator"
                    hint = " Keep it running next time with `make demo KEEP=1`." if ok else ""
                    say(
                        f"Cleaned up: stopped {what}; nothing left running ({elapsed():.0f}s in total).{hint}"
                    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The demo's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m dgd_operator.dev.demo", description=options.DESCRIPTION
    )
    options.add_arguments(parser)
    return options.resolve(parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m dgd_operator.dev.demo` (and `make demo`)."""
    return run(parse_args(argv))
