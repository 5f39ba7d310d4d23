"""A fake kubelet for simulated GPU nodes.

It registers N Node objects that advertise ``nvidia.com/gpu`` (plus cpu, memory, pods), keeps
them Ready, and plays the kubelet's part for pods bound to them: a pod becomes Running with a
unique podIP from its node's range, init containers completed first, container statuses with
restart counts, and Ready only when its containers are ready *and* every readiness gate
condition is True. Pods being deleted are finalised (deleted with grace period 0), since no real
kubelet is there to do it.

We run our own rather than kwok: it needs no extra Go build, and failure injection is a few
lines. Tests and users steer it through pod annotations, so it works the same whether it runs
in-process (a thread, in tests) or as a background process (``dgd dev up``):

* ``dgd.dev/simulate: crashloop`` - containers start, exit with code 1 after about a second,
  and restart with back-off (CrashLoopBackOff; never Ready);
* ``dgd.dev/simulate: fail`` - the pod fails (phase Failed, containers terminated; reason from
  ``dgd.dev/simulate-reason``, default ``Error``);
* ``dgd.dev/simulate: succeed`` - the pod completes (phase Succeeded, exit code 0);
* ``dgd.dev/simulate: unready`` - containers run but never become ready;
* ``dgd.dev/restart: <any new value>`` - restart the containers (or only the one named by
  ``dgd.dev/restart-container``): restartCount+1 and briefly not ready.

:func:`fail_pod` and :func:`restart_container` set those annotations and wait for the result.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import functools
import heapq
import ipaddress
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dgd_operator.dev import pod_commands
from dgd_operator.dev.binaries import KUBE_VERSION
from dgd_operator.dev.kubelet_api import KubeletApi
from dgd_operator.dev.pod_exec import INHERITED_ENV, PodRunner, container_env
from dgd_operator.dev.rest import STRATEGIC_MERGE_PATCH, ApiError, JsonDict, KubeRest

log = logging.getLogger("dgd.dev.kubelet")

SIMULATE_ANNOTATION = "dgd.dev/simulate"
SIMULATE_REASON_ANNOTATION = "dgd.dev/simulate-reason"
RESTART_ANNOTATION = "dgd.dev/restart"
RESTART_CONTAINER_ANNOTATION = "dgd.dev/restart-container"
SIMULATED_NODE_LABEL = "dgd.dev/simulated-node"
PROVISIONED_LABEL = "dgd.dev/local-volume"
GPU_RESOURCE = "nvidia.com/gpu"
KUBELET_VERSION = KUBE_VERSION
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


@dataclasses.dataclass(frozen=True)
class NodePlan:
    """One simulated node: name, GPU count, host IP and the /24 its pod IPs come from, plus the
    shape a test or `dgd dev up` asked for: extra labels (e.g. a rack), taints and extended
    resources (e.g. ``rdma/ib``) advertised next to the GPUs."""

    name: str
    index: int
    gpus: int
    cpu: str = "64"
    memory: str = "512Gi"
    pods: int = 110
    gpu_product: str = "NVIDIA-H100-80GB-HBM3"
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    taints: tuple[Mapping[str, str], ...] = ()
    extended_resources: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Run known container commands as local processes on this node (see pod_exec).
    execute: bool = False

    @property
    def host_ip(self) -> str:
        """The node's InternalIP (and hostIP of its pods)."""
        return f"172.30.{self.index // 250}.{self.index % 250 + 2}"

    @property
    def pod_cidr(self) -> str:
        """The node's pod range; pod IPs are handed out from it."""
        return f"10.244.{self.index}.0/24"

    def to_json(self) -> JsonDict:
        """A JSON-able form (for the kubelet process and ``cluster.json``)."""
        data = dataclasses.asdict(self)
        data["labels"] = dict(self.labels)
        data["taints"] = [dict(t) for t in self.taints]
        data["extended_resources"] = dict(self.extended_resources)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodePlan:
        """The inverse of :meth:`to_json`."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["labels"] = dict(values.get("labels") or {})
        values["taints"] = tuple(dict(t) for t in values.get("taints") or ())
        values["extended_resources"] = dict(values.get("extended_resources") or {})
        return cls(**values)


def parse_key_value(text: str, what: str = "label") -> tuple[str, str]:
    """``KEY=VALUE`` -> (KEY, VALUE); a ValueError names ``what`` when the text is malformed."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{what} {text!r} is not KEY=VALUE")
    return key.strip(), value.strip()


def parse_node_label(text: str) -> tuple[tuple[int, ...] | None, str, str]:
    """``[I,J,...:]KEY=VALUE`` -> (node positions or None for every node, KEY, VALUE).

    Positions count from 0 in the order the nodes are created, e.g. ``0,1:rack=a``.
    """
    head, sep, rest = text.partition(":")
    if sep and "=" not in head and head.replace(",", "").strip().isdigit():
        positions = tuple(int(p) for p in head.split(",") if p.strip())
        key, value = parse_key_value(rest)
        return positions, key, value
    key, value = parse_key_value(text)
    return None, key, value


def parse_taint(text: str) -> dict[str, str]:
    """``KEY[=VALUE]:EFFECT`` (kubectl's spelling) -> a Node taint."""
    body, sep, effect = text.rpartition(":")
    if not sep or effect not in TAINT_EFFECTS or not body:
        raise ValueError(
            f"taint {text!r} is not KEY[=VALUE]:EFFECT with EFFECT one of {TAINT_EFFECTS}"
        )
    key, _, value = body.partition("=")
    taint = {"key": key, "effect": effect}
    if value:
        taint["value"] = value
    return taint


def parse_spread(text: str) -> tuple[str, list[str]]:
    """``KEY=V1,V2,...`` -> (KEY, [V1, V2, ...]): a label spread over the nodes in blocks."""
    key, values = parse_key_value(text, "spread")
    parts = [v.strip() for v in values.split(",") if v.strip()]
    if not parts:
        raise ValueError(f"spread {text!r} names no value")
    return key, parts


def node_plans(
    count: int,
    gpus_per_node: int,
    prefix: str = "gpu-node",
    *,
    labels: Mapping[str, str] | None = None,
    per_node: Mapping[int, Mapping[str, str]] | None = None,
    spreads: Mapping[str, Sequence[str]] | None = None,
    taints: Sequence[Mapping[str, str]] = (),
    extended_resources: Mapping[str, str] | None = None,
    first_index: int = 0,
) -> list[NodePlan]:
    """Plans for ``count`` nodes named ``<prefix>-<i>``, i from ``first_index``.

    Every node gets ``labels``, ``taints`` and ``extended_resources``; ``per_node`` adds labels
    to the node at a position (0 = the first node created). Each ``spreads`` entry
    (label key -> values) splits the nodes into consecutive blocks, one per value, as evenly as
    possible: 4 nodes with ``{"rack": ["a", "b"]}`` are a, a, b, b. ``first_index`` keeps host
    IPs and pod ranges unique when nodes are added to a running cluster.
    """
    if count < 0 or first_index < 0 or first_index + count > 250:
        raise ValueError(f"node indexes must stay within 0..249, got {first_index}+{count}")
    if gpus_per_node < 0:
        raise ValueError(f"gpus per node must be >= 0, got {gpus_per_node}")
    for key, values in (spreads or {}).items():
        if not values:
            raise ValueError(f"spread of {key!r} names no value")
        if len(values) > count:
            raise ValueError(f"cannot spread {len(values)} values of {key!r} over {count} nodes")
    beyond = sorted(p for p in (per_node or {}) if not 0 <= p < count)
    if beyond:
        raise ValueError(f"node labels for positions {beyond}, but there are {count} nodes")
    plans = []
    for offset in range(count):
        node_labels = dict(labels or {})
        for key, values in (spreads or {}).items():
            node_labels[key] = values[offset * len(values) // count]
        node_labels.update((per_node or {}).get(offset, {}))
        index = first_index + offset
        plans.append(
            NodePlan(
                name=f"{prefix}-{index}",
                index=index,
                gpus=gpus_per_node,
                labels=node_labels,
                taints=tuple(dict(t) for t in taints),
                extended_resources=dict(extended_resources or {}),
            )
        )
    return plans


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def node_manifest(plan: NodePlan) -> JsonDict:
    """The Node object for ``plan`` (metadata and spec; status is patched separately)."""
    spec: JsonDict = {"podCIDR": plan.pod_cidr, "podCIDRs": [plan.pod_cidr]}
    if plan.taints:
        spec["taints"] = [dict(t) for t in plan.taints]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": plan.name,
            "labels": {
                "kubernetes.io/hostname": plan.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "sim.gpu",
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.count": str(plan.gpus),
                "nvidia.com/gpu.product": plan.gpu_product,
                **plan.labels,
                SIMULATED_NODE_LABEL: "true",
            },
        },
        "spec": spec,
    }


def node_status(
    plan: NodePlan, previous: JsonDict | None = None, kubelet_port: int | None = None
) -> JsonDict:
    """The status that keeps ``plan``'s node Ready with its advertised capacity. With a
    ``kubelet_port`` (a served kubelet API, see kubelet_api.py) the node's Hostname address is
    127.0.0.1, so the API server reaches that port for `kubectl logs`."""
    now = _now()
    resources = {
        "cpu": plan.cpu,
        "memory": plan.memory,
        "pods": str(plan.pods),
        "ephemeral-storage": "1Ti",
        GPU_RESOURCE: str(plan.gpus),
        **plan.extended_resources,
    }
    previous_conditions = {c.get("type"): c for c in (previous or {}).get("conditions", [])}

    def condition(kind: str, status: str, reason: str, message: str) -> JsonDict:
        old = previous_conditions.get(kind, {})
        since = old.get("lastTransitionTime", now) if old.get("status") == status else now
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": since,
        }

    return {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "simulated"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "simulated"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "simulated"),
            condition("Ready", "True", "KubeletReady", "dgd fake kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": plan.host_ip},
            {"type": "Hostname", "address": plan.name if kubelet_port is None else "127.0.0.1"},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port or 10250}},
        "nodeInfo": {
            "machineID": f"sim-{plan.index}",
            "systemUUID": f"sim-{plan.index}",
            "bootID": f"sim-{plan.index}",
            "kernelVersion": "6.1.0-sim",
            "osImage": "dgd simulated GPU node",
            "containerRuntimeVersion": "sim://1.0",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def _node_healthy(node: JsonDict, plan: NodePlan, kubelet_port: int | None = None) -> bool:
    status = node.get("status", {})
    served = (status.get("daemonEndpoints") or {}).get("kubeletEndpoint", {}).get("Port")
    if kubelet_port is not None and served != kubelet_port:
        return False
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    )
    capacity = status.get("capacity", {})
    wanted = {GPU_RESOURCE: str(plan.gpus), **plan.extended_resources}
    return ready and all(capacity.get(name) == value for name, value in wanted.items())


class _IpPool:
    """Pod IPs per node: the lowest free host number in the node's /24 (never .0, .1, .255)."""

    def __init__(self, plan: NodePlan) -> None:
        self._net = ipaddress.ip_network(plan.pod_cidr)
        self._by_uid: dict[str, str] = {}

    def get(self, uid: str) -> str:
        if uid in self._by_uid:
            return self._by_uid[uid]
        used = set(self._by_uid.values())
        for host in range(2, 255):
            candidate = str(self._net.network_address + host)
            if candidate not in used:
                self._by_uid[uid] = candidate
                return candidate
        raise RuntimeError(f"pod IP range {self._net} is exhausted")

    def claim(self, uid: str, ip: str) -> None:
        if ip and ipaddress.ip_address(ip) in self._net:
            self._by_uid[uid] = ip

    def release(self, uid: str) -> None:
        self._by_uid.pop(uid, None)


def loopback_address(pod_ip: str) -> str:
    """Where an executed pod's processes listen: its pod IP moved into 127.0.0.0/8
    (10.244.N.H -> 127.244.N.H). Every pod gets a loopback address of its own, so two pods can
    both bind port 8000; the pod IP itself stays in the cluster range because Kubernetes
    refuses loopback addresses in EndpointSlices. Clients on the host (``dgd dev
    port-forward``, tests) map a Service endpoint's address with this function."""
    address = ipaddress.ip_address(pod_ip)
    if address.is_loopback:
        return pod_ip
    packed = bytearray(address.packed)
    packed[0] = 127
    return str(ipaddress.ip_address(bytes(packed)))


def _comparable(statuses: Any) -> list[JsonDict]:
    """Container statuses without the fields the API server may fill in or reorder."""
    return [
        {k: v for k, v in s.items() if k not in ("imageID", "allocatedResources", "resources")}
        for s in statuses or []
    ]


def _key(pod: JsonDict) -> tuple[str, str]:
    meta = pod["metadata"]
    return meta.get("namespace", ""), meta["name"]


def _pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}"


class FakeKubelet:
    """Serves simulated nodes: call :meth:`start` (registers nodes, then runs two threads) and
    :meth:`stop`. All state lives in the API server except timers and restart bookkeeping."""

    def __init__(
        self,
        rest: KubeRest,
        plans: Iterable[NodePlan],
        *,
        restart_ready_delay: float = 1.0,
        crash_after: float = 1.0,
        crash_backoff: float = 2.0,
        node_resync: float = 30.0,
        execute: bool = False,
        state_dir: Path | None = None,
        restart_backoff: float = 1.0,
        max_backoff: float = 30.0,
        provision_volumes: bool | None = None,
    ) -> None:
        self.rest = rest
        # execute=True: every node runs known commands as processes (else per NodePlan.execute).
        self.plans = {
            plan.name: dataclasses.replace(plan, execute=True) if execute else plan
            for plan in plans
        }
        if any(plan.execute for plan in self.plans.values()) and state_dir is None:
            raise ValueError("executing pods needs a state_dir (pod logs, the model directory)")
        self.state_dir = state_dir
        # A local provisioner: every unbound PVC gets a hostPath PV in <state>/volumes.
        self.provision_volumes = execute if provision_volumes is None else provision_volumes
        if self.provision_volumes and state_dir is None:
            raise ValueError("provisioning volumes needs a state_dir")
        self.restart_backoff = restart_backoff
        self.max_backoff = max_backoff
        self._runners: dict[str, PodRunner | None] = {}  # uid -> runner (None: simulated)
        self._runners_lock = threading.Lock()
        self._exec_started = False
        self._api: KubeletApi | None = None
        self.restart_ready_delay = restart_ready_delay
        self.crash_after = crash_after
        self.crash_backoff = crash_backoff
        self.node_resync = node_resync
        self._pools = {name: _IpPool(plan) for name, plan in self.plans.items()}
        self._cache: dict[tuple[str, str], JsonDict] = {}
        self._cache_lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._timers: list[tuple[float, tuple[str, str]]] = []
        self._timer_lock = threading.Lock()
        self._restarts_handled: dict[str, str] = {}
        self._not_ready_until: dict[str, float] = {}
        self._crash_due: dict[str, float] = {}
        self._deleting: set[str] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._resource_version = ""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Register the nodes, take a first inventory of pods and start the worker threads."""
        self._ensure_api()
        self.ensure_nodes()
        self._relist(seed=True)
        for target, name in ((self._watch_loop, "watch"), (self._work_loop, "work")):
            thread = threading.Thread(target=target, name=f"dgd-fake-kubelet-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._ensure_exec_thread()

    def _ensure_api(self) -> None:
        """Serve `kubectl logs` (kubelet_api.py) once some node executes pods."""
        if self._api is None and any(plan.execute for plan in self.plans.values()):
            self._api = KubeletApi(self._find_log, self._pod_exists)
            self._api.start()

    def _find_log(self, namespace: str, name: str, container: str) -> Path | None:
        with self._cache_lock:
            pod = self._cache.get((namespace, name))
        return None if pod is None else self.pod_log(pod["metadata"]["uid"], container)

    def _pod_exists(self, namespace: str, name: str) -> bool:
        with self._cache_lock:
            return (namespace, name) in self._cache

    def _ensure_exec_thread(self) -> None:
        """Start the thread that runs pod processes, once some node executes pods."""
        if self._exec_started or not any(plan.execute for plan in self.plans.values()):
            return
        self._exec_started = True
        thread = threading.Thread(target=self._exec_loop, name="dgd-fake-kubelet-exec", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the threads and close connections."""
        self._stop.set()
        self._queue.put(None)
        self.rest.close()  # interrupts the watch and any request in flight
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        with self._runners_lock:
            runners = [r for r in self._runners.values() if r is not None]
            self._runners.clear()
        for runner in runners:
            runner.kill()
        if self._api is not None:
            self._api.stop()
            self._api = None

    def pod_log(self, uid: str, container: str) -> Path | None:
        """The log file of an executed container, or None if the pod is not executed here."""
        with self._runners_lock:
            runner = self._runners.get(uid)
        if runner is None:
            return None
        return runner.pod_dir / f"{container}.log"

    def run_forever(self) -> None:
        """Start and block until :meth:`stop` is called (e.g. from a signal handler)."""
        self.start()
        self._stop.wait()

    # -- nodes ------------------------------------------------------------------------------

    def ensure_nodes(self, plans: Iterable[NodePlan] | None = None) -> None:
        """Create missing nodes and restore Ready/capacity on any that drifted (all served nodes,
        or only ``plans``). Writes nothing for nodes that are already as they should be."""
        for plan in list(self.plans.values()) if plans is None else plans:
            path = f"/api/v1/nodes/{plan.name}"
            try:
                node = self.rest.get(path)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                node = self._create_node(plan, path)
            port = self._api.port if self._api is not None and plan.execute else None
            if not _node_healthy(node, plan, port):
                self.rest.patch(
                    f"{path}/status", {"status": node_status(plan, node.get("status"), port)}
                )

    def _create_node(self, plan: NodePlan, path: str) -> JsonDict:
        try:
            return self.rest.post("/api/v1/nodes", node_manifest(plan))
        except ApiError as exc:
            # The node loop and add_nodes may both find a new node missing and create it: the
            # other one's Node is the one to check.
            if exc.status != 409:
                raise
            return self.rest.get(path)

    def add_nodes(self, plans: Iterable[NodePlan]) -> None:
        """Serve more nodes from now on (created Ready at once); names must be new."""
        fresh = list(plans)
        clash = [plan.name for plan in fresh if plan.name in self.plans]
        if clash:
            raise ValueError(f"nodes already served: {', '.join(clash)}")
        if any(plan.execute for plan in fresh) and self.state_dir is None:
            raise ValueError("executing pods needs a state_dir (pod logs, the model directory)")
        for plan in fresh:
            # The pool first: the watch thread treats a pod as ours once its node is in plans.
            self._pools[plan.name] = _IpPool(plan)
            self.plans[plan.name] = plan
        self._ensure_api()
        self.ensure_nodes(fresh)
        if self._threads:
            self._ensure_exec_thread()

    def remove_nodes(self, names: Iterable[str]) -> None:
        """Stop serving the named nodes and delete their Node objects. Pods still bound to them
        are left alone (delete them first: nothing finalises them afterwards)."""
        for name in names:
            self.plans.pop(name, None)
            try:
                self.rest.delete(f"/api/v1/nodes/{name}")
            except ApiError as exc:
                if exc.status != 404:
                    raise

    # -- event plumbing ---------------------------------------------------------------------

    def _relist(self, seed: bool = False) -> None:
        listing = self.rest.get("/api/v1/pods")
        self._resource_version = listing["metadata"]["resourceVersion"]
        fresh = {_key(p): p for p in listing.get("items", []) if self._ours(p)}
        with self._cache_lock:
            gone = [pod for key, pod in self._cache.items() if key not in fresh]
            self._cache = fresh
        for pod in gone:
            self._forget(pod)
        for pod in fresh.values():
            uid = pod["metadata"]["uid"]
            node = pod["spec"]["nodeName"]
            self._pools[node].claim(uid, pod.get("status", {}).get("podIP", ""))
            if seed:
                token = pod["metadata"].get("annotations", {}).get(RESTART_ANNOTATION)
                if token and pod.get("status", {}).get("phase") == "Running":
                    self._restarts_handled[uid] = token
            self._queue.put(_key(pod))

    def _ours(self, pod: JsonDict) -> bool:
        return pod.get("spec", {}).get("nodeName") in self.plans

    def _forget(self, pod: JsonDict) -> None:
        uid = pod["metadata"]["uid"]
        node = pod.get("spec", {}).get("nodeName")
        if node in self._pools:
            self._pools[node].release(uid)
        self._restarts_handled.pop(uid, None)
        self._not_ready_until.pop(uid, None)
        self._crash_due.pop(uid, None)
        self._deleting.discard(uid)
        with self._runners_lock:
            runner = self._runners.pop(uid, None)
        if runner is not None:
            runner.kill()

    def _watch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                for event in self.rest.watch("/api/v1/pods", self._resource_version, 60):
                    obj = event.get("object", {})
                    self._resource_version = obj.get("metadata", {}).get(
                        "resourceVersion", self._resource_version
                    )
                    kind = event.get("type")
                    if kind == "BOOKMARK" or not obj.get("metadata", {}).get("name"):
                        continue
                    key = _key(obj)
                    if kind == "DELETED" or not self._ours(obj):
                        with self._cache_lock:
                            known = self._cache.pop(key, None)
                        if known is not None:
                            self._forget(known)
                        continue
                    with self._cache_lock:
                        self._cache[key] = obj
                    self._queue.put(key)
            except ApiError as exc:
                if self._stop.is_set():
                    return
                if exc.status != 410:
                    log.warning("pod watch failed: %s", exc)
                    self._stop.wait(0.5)
                self._safe_relist()
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning("pod watch interrupted: %s", exc)
                self._stop.wait(0.5)
                self._safe_relist()

    def _safe_relist(self) -> None:
        try:
            self._relist()
        except Exception as exc:
            if not self._stop.is_set():
                log.warning("pod relist failed: %s", exc)

    def _schedule(self, delay: float, key: tuple[str, str]) -> None:
        with self._timer_lock:
            heapq.heappush(self._timers, (time.monotonic() + delay, key))
        self._queue.put(None)  # wake the worker so it recomputes its sleep

    def _due_keys(self) -> tuple[list[tuple[str, str]], float]:
        now = time.monotonic()
        due: list[tuple[str, str]] = []
        with self._timer_lock:
            while self._timers and self._timers[0][0] <= now:
                due.append(heapq.heappop(self._timers)[1])
            wait = self._timers[0][0] - now if self._timers else 1.0
        return due, max(0.01, min(wait, 1.0))

    def _work_loop(self) -> None:
        next_node_check = time.monotonic() + self.node_resync
        next_volume_check = 0.0
        wait = 0.1
        while not self._stop.is_set():
            keys: set[tuple[str, str]] = set()
            try:
                item = self._queue.get(timeout=wait)
                if item is not None:
                    keys.add(item)
                while True:  # coalesce a burst of events into one pass per pod
                    more = self._queue.get_nowait()
                    if more is not None:
                        keys.add(more)
            except queue.Empty:
                pass
            if self._stop.is_set():
                return
            due, wait = self._due_keys()
            keys.update(due)
            for key in keys:
                with self._cache_lock:
                    pod = self._cache.get(key)
                if pod is None or not self._ours(pod):  # gone, or its node was removed
                    continue
                try:
                    self._reconcile(pod)
                except ApiError as exc:
                    if exc.status == 409:
                        self._schedule(0.05, key)
                    elif exc.status != 404 and not self._stop.is_set():
                        log.warning("pod %s/%s: %s", key[0], key[1], exc)
                        self._schedule(1.0, key)
                except Exception as exc:
                    if not self._stop.is_set():
                        log.exception("pod %s/%s: unexpected error: %s", key[0], key[1], exc)
                        self._schedule(1.0, key)
            if self.provision_volumes and time.monotonic() >= next_volume_check:
                next_volume_check = time.monotonic() + 1.0
                try:
                    self.bind_claims()
                except Exception as exc:
                    if not self._stop.is_set():
                        log.warning("volume provisioning failed: %s", exc)
            if time.monotonic() >= next_node_check:
                next_node_check = time.monotonic() + self.node_resync
                try:
                    self.ensure_nodes()
                except Exception as exc:
                    if not self._stop.is_set():
                        log.warning("node check failed: %s", exc)

    # -- the kubelet's job ------------------------------------------------------------------

    def _reconcile(self, pod: JsonDict) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        namespace, name = _key(pod)
        status = pod.get("status", {})
        phase = status.get("phase", "Pending")
        if meta.get("deletionTimestamp"):
            with self._runners_lock:
                runner = self._runners.get(uid)
            if runner is not None:
                runner.terminate()
                if not runner.gone():
                    self._schedule(0.2, (namespace, name))
                    return
            if uid not in self._deleting:
                self._deleting.add(uid)
                try:
                    self.rest.delete(
                        _pod_path(namespace, name),
                        {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}},
                    )
                except ApiError as exc:
                    if exc.status not in (404, 409):
                        self._deleting.discard(uid)
                        raise
            return
        if phase in ("Succeeded", "Failed"):
            return
        annotations = meta.get("annotations") or {}
        simulate = annotations.get(SIMULATE_ANNOTATION, "")
        if simulate == "fail":
            reason = annotations.get(SIMULATE_REASON_ANNOTATION, "Error")
            self._finish(pod, "Failed", reason=reason, exit_code=1)
            return
        if simulate in ("succeed", "complete"):
            self._finish(pod, "Succeeded", reason="Completed", exit_code=0)
            return
        runner = self._runner_for(pod) if not simulate else None
        if runner is not None:
            token = annotations.get(RESTART_ANNOTATION)
            if token and self._restarts_handled.get(uid) != token:
                self._restarts_handled[uid] = token
                if status.get("startTime"):  # a token present at creation asks nothing
                    runner.restart(annotations.get(RESTART_CONTAINER_ANNOTATION))
            self._sync_executed(pod, runner)
            return
        if phase == "Pending" or not status.get("startTime"):
            self._run(pod, crashloop=simulate == "crashloop")
            return
        token = annotations.get(RESTART_ANNOTATION)
        if token and self._restarts_handled.get(uid) != token:
            self._restarts_handled[uid] = token
            self._restart(pod, annotations.get(RESTART_CONTAINER_ANNOTATION))
            return
        if simulate == "crashloop":
            self._crashloop_step(pod)
            return
        self._sync_readiness(pod, containers_can_be_ready=simulate != "unready")

    # -- volumes --------------------------------------------------------------------------------

    def bind_claims(self) -> list[str]:
        """Bind every pending PersistentVolumeClaim to a new hostPath PersistentVolume backed by
        a directory in ``<state>/volumes`` (what a dynamic provisioner plus the PV binder do in
        a cluster; kube-controller-manager's binder does not run here), and delete PVs whose
        claim is gone. Returns the claims bound now, as ``namespace/name``."""
        assert self.state_dir is not None
        claims = self.rest.get("/api/v1/persistentvolumeclaims").get("items", [])
        live = {c["metadata"]["uid"] for c in claims}
        for pv in self.rest.get("/api/v1/persistentvolumes").get("items", []):
            ref = pv.get("spec", {}).get("claimRef") or {}
            owned = (pv["metadata"].get("labels") or {}).get(PROVISIONED_LABEL) == "true"
            if owned and ref.get("uid") not in live:
                with contextlib.suppress(ApiError):
                    self.rest.delete(f"/api/v1/persistentvolumes/{pv['metadata']['name']}")
        bound = []
        for claim in claims:
            meta, spec = claim["metadata"], claim.get("spec", {})
            if claim.get("status", {}).get("phase") == "Bound" or meta.get("deletionTimestamp"):
                continue
            namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
            pv_name = f"pvc-{uid}"
            directory = self.state_dir / "volumes" / f"{namespace}_{name}_{uid[:8]}"
            directory.mkdir(parents=True, exist_ok=True)
            size = (spec.get("resources", {}).get("requests") or {}).get("storage", "1Gi")
            modes = spec.get("accessModes") or ["ReadWriteOnce"]
            volume = {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv_name, "labels": {PROVISIONED_LABEL: "true"}},
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": modes,
                    "persistentVolumeReclaimPolicy": "Delete",
                    "storageClassName": spec.get("storageClassName") or "",
                    "hostPath": {"path": str(directory), "type": "DirectoryOrCreate"},
                    "claimRef": {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "namespace": namespace,
                        "name": name,
                        "uid": uid,
                    },
                },
            }
            try:
                self.rest.post("/api/v1/persistentvolumes", volume)
            except ApiError as exc:
                if exc.status != 409:
                    raise
            self.rest.patch(
                f"/api/v1/persistentvolumes/{pv_name}/status", {"status": {"phase": "Bound"}}
            )
            path = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"
            if not spec.get("volumeName"):
                self.rest.patch(
                    path,
                    {
                        "metadata": {
                            "annotations": {
                                "pv.kubernetes.io/bind-completed": "yes",
                                "pv.kubernetes.io/bound-by-controller": "yes",
                            }
                        },
                        "spec": {"volumeName": pv_name},
                    },
                )
            self.rest.patch(
                f"{path}/status",
                {"status": {"phase": "Bound", "accessModes": modes, "capacity": {"storage": size}}},
            )
            bound.append(f"{namespace}/{name}")
        return bound

    # -- executed pods -----------------------------------------------------------------------

    def _exec_loop(self) -> None:
        """The one thread that starts container processes: ticks every runner (start, reap,
        restart, probe) about five times a second."""
        while not self._stop.wait(0.2):
            with self._runners_lock:
                runners = [r for r in self._runners.values() if r is not None]
            for runner in runners:
                try:
                    runner.tick()
                except Exception as exc:
                    if not self._stop.is_set():
                        log.exception("pod uid %s: %s", runner.uid, exc)

    def _model_dir(self) -> Path:
        """The tiny local model Dynamo engine commands are served with (built once)."""
        assert self.state_dir is not None
        path = self.state_dir / "model" / "dgd-tiny"
        if not (path / "config.json").exists():
            from dgd_runtime.local.model_dir import build_model_dir

            build_model_dir(path, context_length=32768)
        return path

    def _lookup(self, namespace: str) -> Any:
        def lookup(kind: str, name: str) -> dict[str, str]:
            plural = "configmaps" if kind == "configMapRef" else "secrets"
            try:
                obj = self.rest.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
            except ApiError:
                return {}
            data = dict(obj.get("data") or {})
            if plural == "secrets":
                return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
            return {k: str(v) for k, v in data.items()}

        return lookup

    def _runner_for(self, pod: JsonDict) -> PodRunner | None:
        """The pod's runner, created on first sight on an executing node; None when the pod is
        simulated (not an executing node, or no container command we know, which an Event says)."""
        uid = pod["metadata"]["uid"]
        with self._runners_lock:
            if uid in self._runners:
                return self._runners[uid]
        spec = pod["spec"]
        plan = self.plans[spec["nodeName"]]
        runner: PodRunner | None = None
        if plan.execute and self.state_dir is not None:
            namespace, name = _key(pod)
            pod_ip = self._pools[plan.name].get(uid)
            listen_ip = loopback_address(pod_ip)
            commands: dict[str, pod_commands.LocalCommand | None] = {}
            envs: dict[str, dict[str, str]] = {}
            model_dir = ""
            for container in spec.get("containers", []):
                env = container_env(
                    pod,
                    container,
                    pod_ip=pod_ip,
                    host_ip=plan.host_ip,
                    lookup=self._lookup(namespace),
                )
                command = [pod_commands.expand(a, env) for a in container.get("command") or []]
                args = [pod_commands.expand(a, env) for a in container.get("args") or []]
                if pod_commands.find_module_invocation(command, args) and not model_dir:
                    model_dir = str(self._model_dir())
                commands[container["name"]] = pod_commands.translate(
                    command, args, pod_ip=listen_ip, model_dir=model_dir
                )
                envs[container["name"]] = {
                    **{k: os.environ[k] for k in INHERITED_ENV if k in os.environ},
                    "PYTHONUNBUFFERED": "1",
                    **env,
                }
            unknown = [n for n, c in commands.items() if c is None]
            if len(unknown) < len(commands):
                pod_dir = self.state_dir / "pods" / f"{namespace}_{name}_{uid[:8]}"
                pod_dir.mkdir(parents=True, exist_ok=True)
                runner = PodRunner(
                    pod,
                    pod_ip=pod_ip,
                    listen_ip=listen_ip,
                    commands=commands,
                    envs=envs,
                    pod_dir=pod_dir,
                    restart_backoff=self.restart_backoff,
                    max_backoff=self.max_backoff,
                    on_change=functools.partial(self._queue.put, _key(pod)),
                )
                self._event(
                    pod,
                    "Started",
                    f"dgd dev kubelet runs {', '.join(runner.executed)} as local processes "
                    f"on {listen_ip} (pod IP {pod_ip}); logs in {pod_dir}",
                )
            if unknown:
                self._event(
                    pod,
                    "Simulated",
                    f"container(s) {', '.join(unknown)}: command not known to the dgd dev "
                    "kubelet, simulated (running and ready without a process)",
                )
        with self._runners_lock:
            self._runners[uid] = runner
        return runner

    def _event(self, pod: JsonDict, reason: str, message: str, kind: str = "Normal") -> None:
        namespace, name = _key(pod)
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        try:
            self.rest.post(
                f"/api/v1/namespaces/{namespace}/events",
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"generateName": f"{name}.", "namespace": namespace},
                    "involvedObject": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "name": name,
                        "namespace": namespace,
                        "uid": pod["metadata"]["uid"],
                    },
                    "reason": reason,
                    "message": message,
                    "type": kind,
                    "source": {"component": "kubelet", "host": pod["spec"].get("nodeName", "")},
                    "firstTimestamp": _now(),
                    "lastTimestamp": _now(),
                    "eventTime": None,
                    "count": 1,
                    "reportingComponent": "kubelet",
                    "reportingInstance": pod["spec"].get("nodeName", ""),
                },
            )
        except ApiError as exc:
            log.warning("event for pod %s/%s: %s (%s)", namespace, name, reason, exc)
        del now

    def _sync_executed(self, pod: JsonDict, runner: PodRunner) -> None:
        """Report the runner's container states; patch only when something changed."""
        now = _now()
        spec = pod["spec"]
        plan = self.plans[spec["nodeName"]]
        current = pod.get("status", {})
        statuses = runner.container_statuses(lambda c: str(c.get("image", "")))
        containers_ready = bool(statuses) and all(s["ready"] for s in statuses)
        pod_ready = containers_ready and self._gates_true(pod)
        phase = "Running"
        if runner.all_terminated():
            codes = [s["state"]["terminated"]["exitCode"] for s in statuses]
            phase = "Succeeded" if all(code == 0 for code in codes) else "Failed"
        conditions = {c.get("type"): c.get("status") for c in current.get("conditions", []) or []}
        unchanged = (
            current.get("phase") == phase
            and current.get("podIP") == runner.pod_ip
            and _comparable(current.get("containerStatuses")) == _comparable(statuses)
            and conditions.get("ContainersReady") == ("True" if containers_ready else "False")
            and conditions.get("Ready") == ("True" if pod_ready else "False")
        )
        if unchanged:
            return
        self._patch_status(
            pod,
            {
                "phase": phase,
                "hostIP": plan.host_ip,
                "hostIPs": [{"ip": plan.host_ip}],
                "podIP": runner.pod_ip,
                "podIPs": [{"ip": runner.pod_ip}],
                "startTime": current.get("startTime") or now,
                "qosClass": current.get("qosClass", "BestEffort"),
                "conditions": [
                    self._condition(pod, "PodScheduled", True, now),
                    self._condition(pod, "PodReadyToStartContainers", True, now),
                    self._condition(pod, "Initialized", True, now),
                    self._condition(pod, "ContainersReady", containers_ready, now),
                    self._condition(pod, "Ready", pod_ready, now),
                ],
                "initContainerStatuses": self._init_statuses(pod, now),
                "containerStatuses": statuses,
            },
        )

    def _patch_status(self, pod: JsonDict, status: JsonDict) -> None:
        namespace, name = _key(pod)
        self.rest.patch(
            f"{_pod_path(namespace, name)}/status",
            {"metadata": {"resourceVersion": pod["metadata"]["resourceVersion"]}, "status": status},
            content_type=STRATEGIC_MERGE_PATCH,
        )

    @staticmethod
    def _condition(pod: JsonDict, kind: str, value: bool, now: str) -> JsonDict:
        wanted = "True" if value else "False"
        for cond in pod.get("status", {}).get("conditions", []) or []:
            if cond.get("type") == kind and cond.get("status") == wanted:
                return {
                    "type": kind,
                    "status": wanted,
                    "lastTransitionTime": cond.get("lastTransitionTime", now),
                }
        return {"type": kind, "status": wanted, "lastTransitionTime": now}

    @staticmethod
    def _gates_true(pod: JsonDict) -> bool:
        gates = [
            g.get("conditionType") for g in pod.get("spec", {}).get("readinessGates", []) or []
        ]
        conditions = {
            c.get("type"): c.get("status")
            for c in pod.get("status", {}).get("conditions", []) or []
        }
        return all(conditions.get(g) == "True" for g in gates)

    def _container_status(
        self,
        pod: JsonDict,
        container: JsonDict,
        *,
        ready: bool,
        state: JsonDict,
        restart_count: int = 0,
        last_state: JsonDict | None = None,
    ) -> JsonDict:
        uid = pod["metadata"]["uid"]
        image = container.get("image", "")
        return {
            "name": container["name"],
            "image": image,
            "imageID": f"sim://{image}",
            "containerID": f"sim://{uid[:8]}-{container['name']}",
            "ready": ready,
            "started": "running" in state,
            "restartCount": restart_count,
            "state": state,
            "lastState": last_state or {},
        }

    def _init_statuses(self, pod: JsonDict, now: str) -> list[JsonDict]:
        statuses = []
        for container in pod["spec"].get("initContainers", []) or []:
            if container.get("restartPolicy") == "Always":  # native sidecar: keeps running
                statuses.append(
                    self._container_status(
                        pod, container, ready=True, state={"running": {"startedAt": now}}
                    )
                )
            else:
                statuses.append(
                    self._container_status(
                        pod,
                        container,
                        ready=False,
                        state={
                            "terminated": {
                                "exitCode": 0,
                                "reason": "Completed",
                                "startedAt": now,
                                "finishedAt": now,
                                "containerID": f"sim://{pod['metadata']['uid'][:8]}-{container['name']}",
                            }
                        },
                    )
                )
        return statuses

    def _run(self, pod: JsonDict, crashloop: bool) -> None:
        """Pending -> Running: IPs, init containers done, containers running (ready unless
        simulating a crash loop or unready, and only with readiness gates satisfied)."""
        now = _now()
        spec = pod["spec"]
        plan = self.plans[spec["nodeName"]]
        uid = pod["metadata"]["uid"]
        annotations = pod["metadata"].get("annotations") or {}
        pod_ip = plan.host_ip if spec.get("hostNetwork") else self._pools[plan.name].get(uid)
        containers_ready = not crashloop and annotations.get(SIMULATE_ANNOTATION) != "unready"
        pod_ready = containers_ready and self._gates_true(pod)
        status: JsonDict = {
            "phase": "Running",
            "hostIP": plan.host_ip,
            "hostIPs": [{"ip": plan.host_ip}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": now,
            "qosClass": pod.get("status", {}).get("qosClass", "BestEffort"),
            "conditions": [
                self._condition(pod, "PodScheduled", True, now),
                self._condition(pod, "PodReadyToStartContainers", True, now),
                self._condition(pod, "Initialized", True, now),
                self._condition(pod, "ContainersReady", containers_ready, now),
                self._condition(pod, "Ready", pod_ready, now),
            ],
            "initContainerStatuses": self._init_statuses(pod, now),
            "containerStatuses": [
                self._container_status(
                    pod, c, ready=containers_ready, state={"running": {"startedAt": now}}
                )
                for c in spec.get("containers", [])
            ],
        }
        self._patch_status(pod, status)
        if crashloop:
            self._crash_due[uid] = time.monotonic() + self.crash_after
            self._schedule(self.crash_after, _key(pod))

    def _finish(self, pod: JsonDict, phase: str, reason: str, exit_code: int) -> None:
        """Terminal phase: every container terminated with ``exit_code`` and ``reason``."""
        now = _now()
        spec = pod["spec"]
        plan = self.plans[spec["nodeName"]]
        uid = pod["metadata"]["uid"]
        previous = {s["name"]: s for s in pod.get("status", {}).get("containerStatuses", []) or []}
        started = pod.get("status", {}).get("startTime", now)
        pod_ip = pod.get("status", {}).get("podIP") or (
            plan.host_ip if spec.get("hostNetwork") else self._pools[plan.name].get(uid)
        )
        statuses = []
        for container in spec.get("containers", []):
            terminated = {
                "exitCode": exit_code,
                "reason": reason,
                "startedAt": started,
                "finishedAt": now,
                "containerID": f"sim://{uid[:8]}-{container['name']}",
            }
            statuses.append(
                self._container_status(
                    pod,
                    container,
                    ready=False,
                    state={"terminated": terminated},
                    restart_count=int(previous.get(container["name"], {}).get("restartCount", 0)),
                )
            )
        message = (pod["metadata"].get("annotations") or {}).get("dgd.dev/simulate-message", "")
        status: JsonDict = {
            "phase": phase,
            "reason": reason if phase == "Failed" else None,
            "message": message or None,
            "hostIP": plan.host_ip,
            "hostIPs": [{"ip": plan.host_ip}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": started,
            "conditions": [
                self._condition(pod, "PodScheduled", True, now),
                self._condition(pod, "Initialized", True, now),
                self._condition(pod, "ContainersReady", False, now),
                self._condition(pod, "Ready", False, now),
            ],
            "initContainerStatuses": self._init_statuses(pod, started),
            "containerStatuses": statuses,
        }
        self._patch_status(pod, status)

    def _restart(self, pod: JsonDict, only: str | None) -> None:
        """Restart containers (all, or ``only``): restartCount+1, not ready for a moment."""
        now = _now()
        uid = pod["metadata"]["uid"]
        statuses = []
        for current in pod.get("status", {}).get("containerStatuses", []) or []:
            if only and current["name"] != only:
                statuses.append(current)
                continue
            started = current.get("state", {}).get("running", {}).get("startedAt", now)
            statuses.append(
                {
                    **current,
                    "ready": False,
                    "started": True,
                    "restartCount": int(current.get("restartCount", 0)) + 1,
                    "state": {"running": {"startedAt": now}},
                    "lastState": {
                        "terminated": {
                            "exitCode": 137,
                            "reason": "Error",
                            "startedAt": started,
                            "finishedAt": now,
                            "containerID": current.get("containerID", ""),
                        }
                    },
                }
            )
        self._not_ready_until[uid] = time.monotonic() + self.restart_ready_delay
        self._patch_status(
            pod,
            {
                "conditions": [
                    self._condition(pod, "ContainersReady", False, now),
                    self._condition(pod, "Ready", False, now),
                ],
                "containerStatuses": statuses,
            },
        )
        self._schedule(self.restart_ready_delay, _key(pod))

    def _crashloop_step(self, pod: JsonDict) -> None:
        """Advance the crash loop: running -> exited (CrashLoopBackOff) -> running -> ..."""
        uid = pod["metadata"]["uid"]
        key = _key(pod)
        due = self._crash_due.get(uid)
        now_mono = time.monotonic()
        if due is None:
            due = now_mono + self.crash_after
            self._crash_due[uid] = due
        if now_mono < due:
            self._schedule(due - now_mono, key)
            return
        now = _now()
        statuses = pod.get("status", {}).get("containerStatuses", []) or []
        crashing = any("running" in s.get("state", {}) for s in statuses)
        if crashing and pod["spec"].get("restartPolicy") == "Never":
            self._finish(pod, "Failed", reason="Error", exit_code=1)
            return
        new_statuses = []
        for current in statuses:
            if crashing:
                started = current.get("state", {}).get("running", {}).get("startedAt", now)
                new_statuses.append(
                    {
                        **current,
                        "ready": False,
                        "started": False,
                        "restartCount": int(current.get("restartCount", 0)) + 1,
                        "state": {
                            "waiting": {
                                "reason": "CrashLoopBackOff",
                                "message": f"back-off {self.crash_backoff:g}s restarting failed container={current['name']}",
                            }
                        },
                        "lastState": {
                            "terminated": {
                                "exitCode": 1,
                                "reason": "Error",
                                "startedAt": started,
                                "finishedAt": now,
                                "containerID": current.get("containerID", ""),
                            }
                        },
                    }
                )
            else:
                new_statuses.append(
                    {
                        **current,
                        "ready": False,
                        "started": True,
                        "state": {"running": {"startedAt": now}},
                    }
                )
        delay = self.crash_backoff if crashing else self.crash_after
        self._crash_due[uid] = now_mono + delay
        self._patch_status(
            pod,
            {
                "conditions": [
                    self._condition(pod, "ContainersReady", False, now),
                    self._condition(pod, "Ready", False, now),
                ],
                "containerStatuses": new_statuses,
            },
        )
        self._schedule(delay, key)

    def _sync_readiness(self, pod: JsonDict, containers_can_be_ready: bool) -> None:
        """Recompute container and pod readiness (restart grace, readiness gates); patch only
        when something changed."""
        uid = pod["metadata"]["uid"]
        key = _key(pod)
        remaining = self._not_ready_until.get(uid, 0.0) - time.monotonic()
        if remaining > 0:
            self._schedule(remaining, key)
            containers_can_be_ready = False
        else:
            self._not_ready_until.pop(uid, None)
        statuses = pod.get("status", {}).get("containerStatuses", []) or []
        containers_ready = containers_can_be_ready and all(
            "running" in s.get("state", {}) for s in statuses
        )
        pod_ready = containers_ready and self._gates_true(pod)
        conditions = {
            c.get("type"): c.get("status")
            for c in pod.get("status", {}).get("conditions", []) or []
        }
        unchanged = (
            all(bool(s.get("ready")) == containers_ready for s in statuses)
            and conditions.get("ContainersReady") == ("True" if containers_ready else "False")
            and conditions.get("Ready") == ("True" if pod_ready else "False")
        )
        if unchanged:
            return
        now = _now()
        self._patch_status(
            pod,
            {
                "conditions": [
                    self._condition(pod, "ContainersReady", containers_ready, now),
                    self._condition(pod, "Ready", pod_ready, now),
                ],
                "containerStatuses": [{**s, "ready": containers_ready} for s in statuses],
            },
        )


# -- failure injection (works against an in-process or a background kubelet) ------------------


def _wait_pod(
    rest: KubeRest, namespace: str, name: str, check: Any, timeout: float, what: str
) -> JsonDict:
    deadline = time.monotonic() + timeout
    pod: JsonDict = {}
    while True:
        pod = rest.get(_pod_path(namespace, name))
        if check(pod):
            return pod
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"pod {namespace}/{name}: {what} within {timeout:g}s; last status: "
                f"{pod.get('status', {}).get('phase')} {pod.get('status', {}).get('containerStatuses')}"
            )
        time.sleep(0.05)


def fail_pod(
    rest: KubeRest,
    namespace: str,
    name: str,
    reason: str = "Error",
    *,
    message: str = "",
    wait: bool = True,
    timeout: float = 30.0,
) -> JsonDict:
    """Make a pod on a simulated node fail: phase Failed, containers terminated with exit code
    1 and ``reason``. Returns the pod (after the kubelet acted, if ``wait``)."""
    annotations = {SIMULATE_ANNOTATION: "fail", SIMULATE_REASON_ANNOTATION: reason}
    if message:
        annotations["dgd.dev/simulate-message"] = message
    pod = rest.patch(_pod_path(namespace, name), {"metadata": {"annotations": annotations}})
    if not wait:
        return pod
    return _wait_pod(
        rest,
        namespace,
        name,
        lambda p: p.get("status", {}).get("phase") == "Failed",
        timeout,
        "phase did not become Failed",
    )


def restart_container(
    rest: KubeRest,
    namespace: str,
    name: str,
    container: str | None = None,
    *,
    wait: bool = True,
    timeout: float = 30.0,
) -> JsonDict:
    """Restart a running pod's containers (or just ``container``): restartCount goes up by one
    and the pod is briefly not Ready. Returns the pod once the restart is visible (if ``wait``)."""
    pod = rest.get(_pod_path(namespace, name))
    before = {
        s["name"]: int(s.get("restartCount", 0))
        for s in pod.get("status", {}).get("containerStatuses", []) or []
    }
    if not before:
        raise ValueError(f"pod {namespace}/{name} has no running containers to restart")
    if container is not None and container not in before:
        raise ValueError(
            f"pod {namespace}/{name} has no container {container!r}; has {sorted(before)}"
        )
    annotations: dict[str, str | None] = {
        RESTART_ANNOTATION: uuid.uuid4().hex,
        RESTART_CONTAINER_ANNOTATION: container,
    }
    pod = rest.patch(_pod_path(namespace, name), {"metadata": {"annotations": annotations}})
    if not wait:
        return pod
    target = container or next(iter(before))

    def restarted(p: JsonDict) -> bool:
        counts = {
            s["name"]: int(s.get("restartCount", 0))
            for s in p.get("status", {}).get("containerStatuses", []) or []
        }
        return counts.get(target, 0) > before[target]

    return _wait_pod(rest, namespace, name, restarted, timeout, "restartCount did not increase")


def main(argv: list[str] | None = None) -> int:
    """``python -m dgd_operator.dev.kubelet --kubeconfig K [--nodes N --gpus-per-node G | --plans F]``."""
    parser = argparse.ArgumentParser(
        prog="python -m dgd_operator.dev.kubelet",
        description="Serve simulated GPU nodes for a local control plane until SIGTERM.",
    )
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--node-prefix", default="gpu-node")
    parser.add_argument(
        "--plans",
        type=Path,
        help="JSON list of node plans (NodePlan.to_json); overrides --nodes/--gpus-per-node",
    )
    parser.add_argument(
        "--execute",
        action="store_true",
        help="run known container commands as local processes (see dev/pod_exec.py)",
    )
    parser.add_argument(
        "--state-dir", type=Path, help="pod logs, the model and volumes of executed pods"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.plans is not None:
        plans = [NodePlan.from_json(item) for item in json.loads(args.plans.read_text())]
    else:
        plans = node_plans(args.nodes, args.gpus_per_node, args.node_prefix)
    kubelet = FakeKubelet(
        KubeRest.from_kubeconfig(args.kubeconfig),
        plans,
        execute=args.execute,
        state_dir=args.state_dir,
    )

    def on_signal(_signum: int, _frame: object) -> None:
        kubelet._stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("serving %d simulated nodes", len(kubelet.plans))
    kubelet.run_forever()
    kubelet.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
