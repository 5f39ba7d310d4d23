"""`make demo`: run one DynamoGraphDeployment end to end on this machine, then clean up.

What it does, in order:

1. reads and validates the graph (default: ``recipes/vllm-disagg.yaml``);
2. uses the running ``dgd dev`` cluster if there is one, else starts its own local control plane
   (etcd, kube-apiserver, controller-manager, scheduler and simulated GPU nodes) in its own
   state directory (default ``~/.local/state/dgd/demo``);
3. runs the operator as a child process (``dgd operator``, log in the state directory);
4. applies the DGD and prints a line each time its readiness changes, until it is Ready;
5. shows the DGD status, the objects the operator created (pods with node and GPUs), and that
   they are the same set ``dgd render`` prints;
6. stops the operator and the control plane it started (a reused ``dgd dev`` cluster keeps
   running; only the demo namespace is deleted), unless ``--keep``.

    python -m dgd_operator.demo [--dgd FILE] [--keep] [--timeout SECONDS]
    python -m dgd_operator.demo --down      # stop what `--keep` left running
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dgd_operator.dev import binaries, processes
from dgd_operator.dev import session as dev_session
from dgd_operator.dev.controlplane import ControlPlane, ControlPlaneError, free_port
from dgd_operator.dev.rest import ApiError, JsonDict, KubeRest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DGD = REPO_ROOT / "recipes" / "vllm-disagg.yaml"
DEFAULT_NAMESPACE = "dgd-demo"
DEMO_NODES = 2
DEMO_GPUS_PER_NODE = 8
OPERATOR = "dgd-operator"
DGD_GROUP_VERSION = "nvidia.com/v1alpha1"
DGD_PLURAL = "dynamographdeployments"
LABEL_DGD_NAME = "nvidia.com/dynamo-graph-deployment-name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
GPU = "nvidia.com/gpu"
APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "dgd-demo"


class DemoError(Exception):
    """The demo cannot go on; the message says why in plain words (and what to do)."""


def say(message: str = "") -> None:
    """Print one line of demo output right away."""
    print(message, flush=True)


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/dgd/demo`` (default ``~/.local/state/dgd/demo``)."""
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "dgd" / "demo"


def short_path(path: Path) -> str:
    """``path`` with the home directory shown as ``~``."""
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home) :] if home != "/" and text.startswith(home + os.sep) else text


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it, else shortened."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return short_path(path)


# ------------------------------------------------------------------------------------ graph


@dataclass(frozen=True)
class Graph:
    """The DGD to run: its document (namespace set) and the objects `dgd render` makes of it."""

    source: Path
    doc: JsonDict
    name: str
    namespace: str
    rendered: list[JsonDict]

    @property
    def services(self) -> list[str]:
        """Service names, as written in the spec."""
        return sorted((self.doc.get("spec") or {}).get("services") or {})


def load_graph(path: Path, namespace: str) -> Graph:
    """Read, validate and render the (single) DGD in ``path``; DemoError names bad fields."""
    from dgd_operator.api.validation import is_dgd, validate_dgd
    from dgd_operator.builders.errors import BuildError
    from dgd_operator.builders.graph import build_graph
    from dgd_operator.builders.options import BuildOptions

    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except OSError as exc:
        raise DemoError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise DemoError(f"{path} is not valid YAML: {exc}") from exc
    dgds = [d for d in documents if is_dgd(d)]
    if len(dgds) != 1:
        raise DemoError(
            f"{path} holds {len(dgds)} DynamoGraphDeployments; the demo runs exactly one"
        )
    doc = dict(dgds[0])
    meta = dict(doc.get("metadata") or {})
    meta["namespace"] = namespace
    doc["metadata"] = meta
    result = validate_dgd(doc)
    if result.errors or result.dgd is None:
        problems = "\n".join(f"  {p.path}: {p.message}" for p in result.errors)
        raise DemoError(f"{path} is not a valid DynamoGraphDeployment:\n{problems}")
    try:
        rendered = build_graph(result.dgd, namespace, BuildOptions())
    except BuildError as exc:
        raise DemoError(f"{path}: {exc.path}: {exc.message}") from exc
    return Graph(path, doc, str(meta.get("name")), namespace, rendered)


# ------------------------------------------------------------------------------------ cluster


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


def _running(plane: ControlPlane) -> bool:
    alive = plane.alive()
    return bool(alive) and all(alive.values()) and plane.api_ready()


def acquire_cluster(state_dir: Path, *, reuse_dev: bool) -> Cluster:
    """A running `dgd dev` cluster (reused as is), else a demo cluster of our own."""
    if reuse_dev:
        dev_dir = dev_session.state_dir(None)
        dev = ControlPlane.attach(dev_dir)
        if dev is not None and _running(dev):
            how = f"your running `dgd dev` cluster ({short_path(dev_dir)}); it stays up afterwards"
            return Cluster(dev, dev_dir, ours=False, how=how)
    leftover = ControlPlane.attach(state_dir)
    if leftover is not None:
        if _running(leftover) and leftover.kubeconfig.exists():
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
        nodes=DEMO_NODES,
        gpus_per_node=DEMO_GPUS_PER_NODE,
        kubelet="process",
    )
    began = time.monotonic()
    say(
        f"Starting a local Kubernetes {bins.version} control plane with {DEMO_NODES} simulated "
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
            say(f"Waiting for namespace {namespace} (left by an earlier demo) to finish deleting ...")
            waited = True
        time.sleep(0.5)
    while not rest.exists(f"/api/v1/namespaces/{namespace}/serviceaccounts/default"):
        if time.monotonic() > deadline:
            raise DemoError(f"namespace {namespace} got no default ServiceAccount in {timeout:g}s")
        time.sleep(0.1)


# ------------------------------------------------------------------------------------ operator


@dataclass
class OperatorProcess:
    """`dgd operator` running as our child (its own session), stopped by PID."""

    proc: processes.ManagedProcess
    run_dir: Path
    health_url: str
    metrics_url: str

    @property
    def log(self) -> Path:
        """The operator's log file."""
        return self.proc.log

    def stop(self) -> bool:
        """SIGTERM (then SIGKILL) the operator; True when it is gone."""
        return processes.stop(self.proc, self.run_dir)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the operator's log, indented."""
        text = processes.tail(self.log, lines)
        return "\n".join(f"    {line}" for line in text.splitlines()) or "    (empty)"


def operator_env(kubeconfig: Path, namespace: str, health_port: int, metrics_port: int) -> dict[str, str]:
    """Environment for a local `dgd operator`: our kubeconfig, one namespace, loopback ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGD_")}
    env.pop("KUBERNETES_SERVICE_HOST", None)  # never the in-cluster login
    env.update(
        KUBECONFIG=str(kubeconfig),
        DGD_WATCH_NAMESPACES=namespace,
        DGD_BIND_ADDRESS="127.0.0.1",
        DGD_HEALTH_PORT=str(health_port),
        DGD_METRICS_PORT=str(metrics_port),
        DGD_LOG_FORMAT="text",
        PYTHONUNBUFFERED="1",
    )
    return env


def start_operator(state_dir: Path, kubeconfig: Path, namespace: str, timeout: float = 60.0) -> OperatorProcess:
    """Start `dgd operator` for ``namespace`` and wait until its health endpoint answers."""
    run_dir = state_dir / "run"
    old = processes.load(OPERATOR, run_dir, state_dir / "logs")
    if old is not None:
        processes.stop(old, run_dir)  # one left by an earlier `--keep` run
    health, metrics = free_port(), free_port()
    log = state_dir / "logs" / f"{OPERATOR}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    # The `dgd` console script when installed (so `pgrep -af "dgd operator"` finds it).
    script = Path(sys.executable).parent / "dgd"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "dgd_operator"]
    proc = processes.spawn(
        OPERATOR,
        [*argv, "operator"],
        log=log,
        pid_dir=run_dir,
        env=operator_env(kubeconfig, namespace, health, metrics),
    )
    operator = OperatorProcess(
        proc, run_dir, f"http://127.0.0.1:{health}/healthz", f"http://127.0.0.1:{metrics}/metrics"
    )
    deadline = time.monotonic() + timeout
    while not _http_ok(operator.health_url):
        if not proc.alive():
            operator.stop()
            raise DemoError(
                f"the operator exited at startup (code {proc.exit_code()}); its log:\n"
                + operator.log_tail()
            )
        if time.monotonic() > deadline:
            operator.stop()
            raise DemoError(
                f"the operator did not report healthy in {timeout:g}s; its log:\n" + operator.log_tail()
            )
        time.sleep(0.1)
    return operator


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


# ------------------------------------------------------------------------------------ waiting


def dgd_path(namespace: str, name: str | None = None) -> str:
    """REST path of the DGD collection, or of one DGD."""
    base = f"/apis/{DGD_GROUP_VERSION}/namespaces/{namespace}/{DGD_PLURAL}"
    return f"{base}/{name}" if name else base


def apply_dgd(rest: KubeRest, graph: Graph) -> JsonDict:
    """Server-side apply the DGD (like `kubectl apply --server-side`)."""
    return rest.patch(
        dgd_path(graph.namespace, graph.name),
        graph.doc,
        content_type=APPLY_PATCH,
        fieldManager=FIELD_MANAGER,
        force=True,
    )


def ready_condition(status: Mapping[str, Any]) -> Mapping[str, Any]:
    """The DGD's `Ready` condition (empty when none yet)."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return {}


def services_ready(status: Mapping[str, Any], services: Sequence[str]) -> list[str]:
    """Names of the services whose replicas are all ready, per `status.services`."""
    per_service = status.get("services") or {}
    ready = []
    for svc in services:
        entry = per_service.get(svc) or {}
        want = len(entry.get("componentNames") or []) and entry.get("replicas", 0)
        if entry and entry.get("readyReplicas", 0) >= max(int(want or 0), 1):
            ready.append(svc)
    return ready


@dataclass
class Progress:
    """What the last progress line said, to print only changes."""

    last: tuple[Any, ...] | None = None
    lines: list[str] = field(default_factory=list)


def progress_line(obj: Mapping[str, Any], graph: Graph, elapsed: float) -> tuple[tuple[Any, ...], str]:
    """(change key, text) for the DGD's current state."""
    status = obj.get("status") or {}
    state = status.get("state") or "no status"
    ready = services_ready(status, graph.services)
    waiting = [s for s in graph.services if s not in ready]
    text = f"  {elapsed:5.1f}s  {state:<11} services ready {len(ready)}/{len(graph.services)}"
    if waiting and status:
        text += f"  (waiting for {', '.join(waiting)})"
    return (state, tuple(ready)), text


def wait_ready(
    rest: KubeRest,
    graph: Graph,
    operator: OperatorProcess,
    timeout: float,
    on_line: Callable[[str], None] = say,
) -> JsonDict:
    """Poll the DGD until it is `successful` for its generation; DemoError on failure/timeout."""
    began = time.monotonic()
    progress = Progress()
    last_obj: JsonDict = {}
    while True:
        elapsed = time.monotonic() - began
        try:
            last_obj = rest.get(dgd_path(graph.namespace, graph.name))
        except (ApiError, OSError) as exc:
            if time.monotonic() - began > timeout:
                raise DemoError(f"cannot read the DGD: {exc}") from exc
        else:
            key, text = progress_line(last_obj, graph, elapsed)
            if key != progress.last:
                progress.last = key
                on_line(text)
            status = last_obj.get("status") or {}
            generation = (last_obj.get("metadata") or {}).get("generation")
            if status.get("state") == "successful" and status.get("observedGeneration") == generation:
                return last_obj
            if status.get("state") == "failed":
                cond = ready_condition(status)
                raise DemoError(
                    f"the operator rejected {graph.name}: {cond.get('message') or cond.get('reason')}"
                )
        if not operator.proc.alive():
            raise DemoError(
                f"the operator exited (code {operator.proc.exit_code()}); its log:\n" + operator.log_tail()
            )
        if time.monotonic() - began > timeout:
            cond = ready_condition(last_obj.get("status") or {})
            detail = cond.get("message") or "the operator wrote no status"
            raise DemoError(
                f"{graph.name} did not become Ready within {timeout:g}s.\n"
                f"  last status: {detail}\n"
                f"  operator log ({short_path(operator.log)}), last lines:\n{operator.log_tail()}"
            )
        time.sleep(0.2)


# ------------------------------------------------------------------------------------ report


def table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Left-aligned columns; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
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
            total += int(str(limits.get(GPU, 0)))
    return total


def _collection(api_version: str, kind: str, namespace: str) -> str:
    from dgd_operator.kube import resource_kind

    return resource_kind(api_version, kind).collection_path(namespace)


def live_children(rest: KubeRest, graph: Graph) -> list[JsonDict]:
    """Every object labelled as the DGD's child, of the kinds `dgd render` makes."""
    selector = f"{LABEL_DGD_NAME}={graph.name},{LABEL_MANAGED_BY}=dgd-operator"
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
        workload = f"{entry.get('componentKind', '-')} {','.join(entry.get('componentNames') or [])}"
        ready = f"{entry.get('readyReplicas', 0)}/{spec.get('replicas', 1)}"
        rows.append((svc, kind, workload, ready, gpus))
    lines.append("")
    lines += table(rows)

    children = live_children(rest, graph)
    live_set = {(c["kind"], c["metadata"]["name"]) for c in children}
    rendered_set = {(o["kind"], o["metadata"]["name"]) for o in graph.rendered}
    order = {key: index for index, key in enumerate((o["kind"], o["metadata"]["name"]) for o in graph.rendered)}
    lines.append("")
    lines.append(f"Objects the operator created ({len(children)}):")
    lines += table(
        [("KIND", "NAME")]
        + [(kind, name) for kind, name in sorted(live_set, key=lambda k: (order.get(k, 1 << 20), k))]
    )
    pods = rest.get(
        f"/api/v1/namespaces/{graph.namespace}/pods", labelSelector=f"{LABEL_DGD_NAME}={graph.name}"
    ).get("items") or []
    pod_rows: list[tuple[str, ...]] = [("POD", "NODE", "GPUS", "PHASE", "READY")]
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        pod_ready = next(
            (c.get("status") for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
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
        lines.append(f"Same {len(rendered_set)} objects as `{render_cmd}` prints (no cluster needed).")
    else:
        missing = sorted(rendered_set - live_set)
        extra = sorted(live_set - rendered_set)
        lines.append(f"Differs from `{render_cmd}`: missing {missing or '-'}, extra {extra or '-'}")
    return lines


# ------------------------------------------------------------------------------------ main


def explore_lines(cluster: Cluster, graph: Graph, operator: OperatorProcess) -> list[str]:
    """How to look around when the demo is kept running."""
    kubectl = "kubectl"
    with contextlib.suppress(Exception):
        from dgd_operator.tools.helm import tools_cache_dir

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
        f"-p '{{\"spec\":{{\"services\":{{\"{scaled}\":{{\"replicas\":2}}}}}}}}'   # the operator scales it",
        f"  tail -f {operator.log}   # operator log",
        f"  curl -s {operator.metrics_url}   # operator metrics",
        "Clean up:",
        f"  {sys.executable} -m dgd_operator.demo --down"
        + (f" --state-dir {cluster.state_dir}" if cluster.state_dir != default_state_dir() and cluster.ours else ""),
    ]
    if cluster.ours:
        lines.append(
            f"  (stops the operator, then `dgd dev down --state-dir {cluster.state_dir}`)"
        )
    else:
        lines.append(f"  (stops the operator and deletes namespace {ns}; `dgd dev down` stops the cluster)")
    return lines


def cleanup(cluster: Cluster | None, operator: OperatorProcess | None, graph: Graph | None) -> list[str]:
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
            cluster.rest.delete(f"/api/v1/namespaces/{graph.namespace}", propagationPolicy="Background")
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
        if dev is not None and _running(dev):
            with contextlib.suppress(ApiError, OSError):
                dev.rest.delete(f"/api/v1/namespaces/{namespace}", propagationPolicy="Background")
                stopped.append(f"namespace {namespace} in your `dgd dev` cluster (deleting)")
    shutil.rmtree(state_dir, ignore_errors=True)
    say(f"Stopped {' and '.join(stopped) if stopped else 'nothing (no kept demo found)'}.")
    return 0


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
            cluster = acquire_cluster(state_dir, reuse_dev=not args.own_cluster)
            say(f"Cluster: {cluster.how}.")
            ensure_namespace(cluster.rest, graph.namespace)
            with _timer() as op_elapsed:
                operator = start_operator(state_dir, cluster.plane.kubeconfig, graph.namespace)
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
            ok = True
            if args.keep:
                kept = True
                for line in explore_lines(cluster, graph, operator):
                    say(line)
            return 0
        except DemoError as exc:
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
                    say(f"Cleaned up: stopped {what}; nothing left running ({elapsed():.0f}s in total).{hint}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The demo's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m dgd_operator.demo",
        description="Run one DynamoGraphDeployment on a local control plane with simulated GPU "
        "nodes, show what the operator made of it, and clean up.",
    )
    parser.add_argument(
        "--dgd",
        type=Path,
        default=DEFAULT_DGD,
        metavar="FILE",
        help=f"the DGD to run (default: {short_path(DEFAULT_DGD)})",
    )
    parser.add_argument(
        "-n", "--namespace", default=DEFAULT_NAMESPACE, help="namespace (default: %(default)s)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave the operator and cluster running to explore"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, metavar="SECONDS", help="Ready timeout (default 120)"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=default_state_dir(),
        metavar="DIR",
        help=f"the demo's own cluster and operator log (default: {short_path(default_state_dir())})",
    )
    parser.add_argument(
        "--own-cluster",
        action="store_true",
        help="start a demo cluster even when a `dgd dev` cluster is running",
    )
    parser.add_argument("--down", action="store_true", help="stop what `--keep` left running")
    args = parser.parse_args(argv)
    args.state_dir = args.state_dir.expanduser().resolve()
    args.dgd = args.dgd.expanduser().resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m dgd_operator.demo` (and `make demo`)."""
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
