"""What the demo shows once the DGD is Ready, and how to look around when it is kept running."""

from __future__ import annotations

import calendar
import contextlib
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from dgd_operator.api.constants import GPU_RESOURCE, LABEL_GRAPH, LABEL_MANAGED_BY, MANAGED_BY
from dgd_operator.dev.demo.cluster import Cluster
from dgd_operator.dev.demo.graph import Graph, display_path
from dgd_operator.dev.demo.options import default_state_dir
from dgd_operator.dev.demo.watch import ready_condition
from dgd_operator.dev.operator_process import OperatorProcess
from dgd_operator.dev.rest import JsonDict, KubeRest
from dgd_operator.reconcile.resources import resource_kind
from dgd_operator.tools.helm import tools_cache_dir


def table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Left-aligned columns; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in rows
    ]


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    try:
        created = calendar.timegm(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return "-"
    seconds = max(0, int(time.time() - created))
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m"


def _gpus(pod_spec: Mapping[str, Any]) -> int:
    total = 0
    for container in pod_spec.get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        with contextlib.suppress(ValueError):
            total += int(str(limits.get(GPU_RESOURCE, 0)))
    return total


def _collection(api_version: str, kind: str, namespace: str) -> str:
    return resource_kind(api_version, kind).collection_path(namespace)


def live_children(rest: KubeRest, graph: Graph) -> list[JsonDict]:
    """Every object labelled as the DGD's child, of the kinds `dgd render` makes."""
    selector = f"{LABEL_GRAPH}={graph.name},{LABEL_MANAGED_BY}={MANAGED_BY}"
    kinds: dict[tuple[str, str], None] = {}
    for obj in graph.rendered:
        kinds[(obj["apiVersion"], obj["kind"])] = None
    found: list[JsonDict] = []
    for api_version, kind in kinds:
        items = rest.get(_collection(api_version, kind, graph.namespace), labelSelector=selector)
        for item in items.get("items") or []:
            item.setdefault("kind", kind)
            found.append(item)
    return found


def report(rest: KubeRest, graph: Graph, obj: Mapping[str, Any]) -> list[str]:
    """What the user wants to see once the DGD is Ready, as lines."""
    lines: list[str] = []
    status = obj.get("status") or {}
    cond = ready_condition(status)
    meta = obj.get("metadata") or {}
    lines.append(f"$ kubectl get dgd -n {graph.namespace}")
    lines += table(
        [
            ("NAME", "READY", "BACKEND", "STATE", "AGE"),
            (
                graph.name,
                str(cond.get("status", "-")),
                str((obj.get("spec") or {}).get("backendFramework", "-")),
                str(status.get("state", "-")),
                _age(meta.get("creationTimestamp")),
            ),
        ],
        indent="",
    )
    lines.append("")
    lines.append(
        f"Condition Ready={cond.get('status', '?')} ({cond.get('reason', '-')}): {cond.get('message', '')}"
    )
    spec_services = (obj.get("spec") or {}).get("services") or {}
    rows: list[tuple[str, ...]] = [("SERVICE", "TYPE", "WORKLOAD", "READY", "GPUS/REPLICA")]
    for svc in graph.services:
        entry = (status.get("services") or {}).get(svc) or {}
        spec = spec_services.get(svc) or {}
        kind = str(spec.get("componentType") or "-")
        if spec.get("subComponentType"):
            kind += f"/{spec['subComponentType']}"
        gpus = str(((spec.get("resources") or {}).get("limits") or {}).get("gpu", 0))
        workload = (
            f"{entry.get('componentKind', '-')} {','.join(entry.get('componentNames') or [])}"
        )
        ready = f"{entry.get('readyReplicas', 0)}/{spec.get('replicas', 1)}"
        rows.append((svc, kind, workload, ready, gpus))
    lines.append("")
    lines += table(rows)

    children = live_children(rest, graph)
    live_set = {(c["kind"], c["metadata"]["name"]) for c in children}
    rendered_set = {(o["kind"], o["metadata"]["name"]) for o in graph.rendered}
    order = {
        key: index
        for index, key in enumerate((o["kind"], o["metadata"]["name"]) for o in graph.rendered)
    }
    lines.append("")
    lines.append(f"Objects the operator created ({len(children)}):")
    lines += table(
        [("KIND", "NAME")]
        + [
            (kind, name)
            for kind, name in sorted(live_set, key=lambda k: (order.get(k, 1 << 20), k))
        ]
    )
    pods = (
        rest.get(
            f"/api/v1/namespaces/{graph.namespace}/pods",
            labelSelector=f"{LABEL_GRAPH}={graph.name}",
        ).get("items")
        or []
    )
    pod_rows: list[tuple[str, ...]] = [("POD", "NODE", "GPUS", "PHASE", "READY")]
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        pod_ready = next(
            (
                c.get("status")
                for c in (pod.get("status") or {}).get("conditions") or []
                if c.get("type") == "Ready"
            ),
            "False",
        )
        pod_rows.append(
            (
                pod["metadata"]["name"],
                str((pod.get("spec") or {}).get("nodeName") or "-"),
                str(_gpus(pod.get("spec") or {})),
                str((pod.get("status") or {}).get("phase") or "-"),
                str(pod_ready),
            )
        )
    lines.append("")
    total_gpus = sum(int(row[2]) for row in pod_rows[1:])
    lines.append(f"Pods on the simulated GPU nodes ({len(pods)} pods, {total_gpus} GPUs):")
    lines += table(pod_rows)
    lines.append("")
    source = display_path(graph.source)
    render_cmd = f"dgd render {source} -n {graph.namespace}"
    if live_set == rendered_set:
        lines.append(
            f"Same {len(rendered_set)} objects as `{render_cmd}` prints (no cluster needed)."
        )
    else:
        missing = sorted(rendered_set - live_set)
        extra = sorted(live_set - rendered_set)
        lines.append(f"Differs from `{render_cmd}`: missing {missing or '-'}, extra {extra or '-'}")
    return lines


def explore_lines(cluster: Cluster, graph: Graph, operator: OperatorProcess) -> list[str]:
    """How to look around when the demo is kept running."""
    kubectl = "kubectl"
    with contextlib.suppress(OSError):
        cached = tools_cache_dir() / "kubectl"
        if cached.exists() and shutil.which("kubectl") is None:
            kubectl = str(cached)
    ns = graph.namespace
    workers = [s for s in graph.services if "worker" in s.lower()]
    scaled = (workers or graph.services)[0]
    lines = [
        f"Kept running: the operator (pid {operator.proc.pid}) and "
        + ("the demo control plane." if cluster.ours else "your `dgd dev` cluster."),
        "Explore:",
        f"  export KUBECONFIG={cluster.plane.kubeconfig}",
        f"  {kubectl} get dgd,deploy,svc,pods -n {ns} -o wide",
        f"  {kubectl} describe dgd {graph.name} -n {ns}",
        f"  {kubectl} get events -n {ns} --sort-by=.lastTimestamp",
        f"  {kubectl} patch dgd {graph.name} -n {ns} --type merge "
        f'-p \'{{"spec":{{"services":{{"{scaled}":{{"replicas":2}}}}}}}}\'   # the operator scales it',
        f"  tail -f {operator.log}   # operator log",
        f"  curl -s {operator.metrics_url}   # operator metrics",
        "Clean up:",
        f"  {sys.executable} -m dgd_operator.dev.demo --down"
        + (
            f" --state-dir {cluster.state_dir}"
            if cluster.state_dir != default_state_dir() and cluster.ours
            else ""
        ),
    ]
    if cluster.ours:
        lines.append(f"  (stops the operator, then `dgd dev down --state-dir {cluster.state_dir}`)")
    else:
        lines.append(
            f"  (stops the operator and deletes namespace {ns}; `dgd dev down` stops the cluster)"
        )
    return lines
