"""Running a pod's containers as local processes, for the executing fake kubelet.

A :class:`PodRunner` owns one pod's processes: it starts each known container's command (see
:mod:`dgd_operator.dev.pod_commands`) in a process group of its own, with the pod's environment
(downward API included), stdout and stderr appended to ``<pod dir>/<container>.log``. Its
:meth:`PodRunner.tick` (called about every 0.2 s from one kubelet thread, which is the only
thread that starts processes, so ``PR_SET_PDEATHSIG`` ties them to the kubelet) notices exits,
restarts per the pod's ``restartPolicy`` with a doubling back-off (``CrashLoopBackOff``), and
runs the startup, liveness and readiness probes (httpGet, tcpSocket, exec) for real.
:meth:`PodRunner.container_statuses` gives the statuses the kubelet reports.

Containers whose command is not known stay simulated inside an executed pod (running and
ready), as on a simulated pod.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dgd_operator.dev import processes
from dgd_operator.dev.pod_commands import LocalCommand, expand
from dgd_operator.dev.rest import JsonDict

# Variables of the kubelet's own environment a container process gets (so python and our
# runtime are found); everything else comes from the pod spec.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR")
# (kind: "configMapRef" | "secretRef", name) -> the object's data (decoded), {} if absent.
DataLookup = Callable[[str, str], Mapping[str, str]]
# The kubelet's limits for a termination message taken from the log (FallbackToLogsOnError).
FALLBACK_MESSAGE_LINES = 80
FALLBACK_MESSAGE_BYTES = 2048


def termination_message(container: JsonDict, exit_code: int, log: Path, since: int) -> str:
    """What the kubelet reports as ``terminated.message``: with ``terminationMessagePolicy:
    FallbackToLogsOnError`` and a failed exit, the end of what this run logged (at most 80
    lines and 2048 bytes); otherwise nothing (no process writes a termination-log file here)."""
    if exit_code == 0 or container.get("terminationMessagePolicy") != "FallbackToLogsOnError":
        return ""
    try:
        with log.open("rb") as f:
            f.seek(since)
            data = f.read()
    except OSError:
        return ""
    tail = b"".join(data.splitlines(keepends=True)[-FALLBACK_MESSAGE_LINES:])
    return tail[-FALLBACK_MESSAGE_BYTES:].decode(errors="replace")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def field_ref(pod: JsonDict, path: str, pod_ip: str, host_ip: str) -> str:
    """The value of a downward-API ``fieldRef.fieldPath`` for ``pod``."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path])
    for prefix, values in (
        ("metadata.labels", meta.get("labels") or {}),
        ("metadata.annotations", meta.get("annotations") or {}),
    ):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str(values.get(path[len(prefix) + 2 : -2], ""))
    return ""


def container_env(
    pod: JsonDict,
    container: JsonDict,
    *,
    pod_ip: str,
    host_ip: str,
    lookup: DataLookup | None = None,
) -> dict[str, str]:
    """The environment Kubernetes would give ``container``: ``envFrom``, then ``env`` in order
    (``value`` with ``$(VAR)`` expansion, ``fieldRef``, ``resourceFieldRef``, ConfigMap and
    Secret keys through ``lookup(kind, name)``), plus ``HOSTNAME``."""
    env: dict[str, str] = {"HOSTNAME": pod.get("metadata", {}).get("name", "")}
    for source in container.get("envFrom", []) or []:
        prefix = source.get("prefix", "")
        for kind in ("configMapRef", "secretRef"):
            ref = source.get(kind)
            if ref and lookup is not None:
                for key, value in lookup(kind, ref.get("name", "")).items():
                    env[prefix + key] = value
    for item in container.get("env", []) or []:
        name = item.get("name", "")
        if "value" in item:
            env[name] = expand(str(item.get("value") or ""), env)
            continue
        source = item.get("valueFrom") or {}
        if "fieldRef" in source:
            env[name] = field_ref(pod, source["fieldRef"].get("fieldPath", ""), pod_ip, host_ip)
        elif "resourceFieldRef" in source:
            resource = source["resourceFieldRef"].get("resource", "")
            kind, _, what = resource.partition(".")
            limits = (container.get("resources") or {}).get(kind, {})
            env[name] = str(limits.get(what, "0"))
        else:
            for kind, ref_key in (
                ("configMapKeyRef", "configMapRef"),
                ("secretKeyRef", "secretRef"),
            ):
                ref = source.get(kind)
                if ref and lookup is not None:
                    found = lookup(ref_key, ref.get("name", "")).get(ref.get("key", ""))
                    if found is not None:
                        env[name] = found
    return env


def _port(container: JsonDict, port: Any) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for item in container.get("ports", []) or []:
        if item.get("name") == port:
            return int(item["containerPort"])
    raise ValueError(f"no container port named {port!r}")


def run_probe(
    probe: JsonDict, container: JsonDict, pod_ip: str, env: Mapping[str, str], cwd: Path
) -> bool:
    """Run one probe (httpGet, tcpSocket or exec) against the pod's address; True on success.
    The timeout is the probe's ``timeoutSeconds`` (default 1 s)."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "httpGet" in probe:
            get = probe["httpGet"]
            host = get.get("host") or pod_ip
            conn = http.client.HTTPConnection(
                host, _port(container, get.get("port")), timeout=timeout
            )
            try:
                headers = {h["name"]: h["value"] for h in get.get("httpHeaders", []) or []}
                conn.request("GET", get.get("path") or "/", headers=headers)
                return 200 <= conn.getresponse().status < 400
            finally:
                conn.close()
        if "tcpSocket" in probe:
            target = (
                probe["tcpSocket"].get("host") or pod_ip,
                _port(container, probe["tcpSocket"].get("port")),
            )
            with socket.create_connection(target, timeout=timeout):
                return True
        if "exec" in probe:
            done = subprocess.run(
                list(probe["exec"].get("command") or []),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
            return done.returncode == 0
        if "grpc" in probe:
            target = (pod_ip, int(probe["grpc"].get("port", 0)))
            with socket.create_connection(target, timeout=timeout):
                return True
    except (OSError, ValueError, subprocess.SubprocessError, http.client.HTTPException):
        return False
    return True


@dataclasses.dataclass
class _ProbeState:
    probe: JsonDict
    due: float
    failures: int = 0
    ok: bool = False

    def period(self) -> float:
        return float(self.probe.get("periodSeconds") or 10)

    def threshold(self) -> int:
        return int(self.probe.get("failureThreshold") or 3)


@dataclasses.dataclass
class ContainerRunner:
    """One container: its command (None = simulated), process, restart and probe state."""

    spec: JsonDict
    command: LocalCommand | None
    env: dict[str, str]
    log: Path
    proc: processes.ManagedProcess | None = None
    started_at: str = ""
    restart_count: int = 0
    crashes_in_a_row: int = 0
    restart_due: float | None = None
    backoff: float = 0.0
    last_terminated: JsonDict | None = None
    terminated: JsonDict | None = None
    started_mono: float = 0.0
    log_offset: int = 0
    startup: _ProbeState | None = None
    liveness: _ProbeState | None = None
    readiness: _ProbeState | None = None
    started: bool = False
    ready: bool = False

    @property
    def name(self) -> str:
        """The container's name."""
        return str(self.spec["name"])


class PodRunner:
    """The processes of one executed pod (see the module doc)."""

    def __init__(
        self,
        pod: JsonDict,
        *,
        pod_ip: str,
        listen_ip: str,
        commands: Mapping[str, LocalCommand | None],
        envs: Mapping[str, dict[str, str]],
        pod_dir: Path,
        restart_backoff: float = 1.0,
        max_backoff: float = 30.0,
        max_grace: float = 5.0,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.uid = pod["metadata"]["uid"]
        self.pod_ip = pod_ip
        self.listen_ip = listen_ip  # where the processes bind and the probes go
        self.restart_policy = pod["spec"].get("restartPolicy", "Always")
        grace = pod["spec"].get("terminationGracePeriodSeconds")
        self.grace = min(float(30 if grace is None else grace), max_grace)
        self.pod_dir = pod_dir
        self.restart_backoff = restart_backoff
        self.max_backoff = max_backoff
        self.on_change = on_change
        self._lock = threading.Lock()
        self._terminating_until: float | None = None
        self.containers = [
            ContainerRunner(
                spec=c,
                command=commands.get(c["name"]),
                env=envs.get(c["name"], {}),
                log=pod_dir / f"{c['name']}.log",
            )
            for c in pod["spec"].get("containers", [])
        ]

    @property
    def executed(self) -> list[str]:
        """Names of the containers that run as processes."""
        return [c.name for c in self.containers if c.command is not None]

    # -- driven by the kubelet's exec thread ---------------------------------------------------

    def tick(self) -> None:
        """Start, reap, restart and probe; calls ``on_change`` when a status changed."""
        changed = False
        now = time.monotonic()
        with self._lock:
            if self._terminating_until is not None:
                for c in self.containers:
                    if c.proc is not None and not c.proc.alive() and c.proc.popen is not None:
                        c.proc.popen.poll()
                    if c.proc is not None and c.proc.alive() and now >= self._terminating_until:
                        self._signal(c, signal.SIGKILL)
                return
            for c in self.containers:
                if c.command is None:
                    if not c.started_at:
                        c.started_at, c.started, c.ready, changed = _now(), True, True, True
                    continue
                if c.proc is None and c.terminated is None and c.restart_due is None:
                    self._start(c, now)
                    changed = True
                    continue
                if c.proc is not None:
                    code = c.proc.popen.poll() if c.proc.popen is not None else None
                    if code is not None:
                        self._exited(c, code, now)
                        changed = True
                        continue
                    changed |= self._probe(c, now)
                elif c.restart_due is not None and now >= c.restart_due:
                    c.restart_due = None
                    c.restart_count += 1
                    self._start(c, now)
                    changed = True
        if changed:
            self.on_change()

    def _start(self, c: ContainerRunner, now: float) -> None:
        assert c.command is not None
        argv = [sys.executable, "-m", c.command.module, *(expand(a, c.env) for a in c.command.args)]
        with c.log.open("ab") as out:
            out.write(f"--- {_now()} dgd dev kubelet starts: {' '.join(argv)}\n".encode())
            c.log_offset = out.tell()
        c.proc = processes.spawn(
            c.name,
            argv,
            log=c.log,
            pid_dir=self.pod_dir,
            env=c.env,
            cwd=self.pod_dir,
            die_with_parent=True,
        )
        c.started_at, c.started_mono, c.terminated = _now(), now, None
        c.started = c.ready = False
        spec = c.spec
        c.startup = self._probe_state(spec.get("startupProbe"), now)
        c.liveness = self._probe_state(spec.get("livenessProbe"), now)
        c.readiness = self._probe_state(spec.get("readinessProbe"), now)
        c.started = c.startup is None
        c.ready = c.started and c.readiness is None

    @staticmethod
    def _probe_state(probe: JsonDict | None, now: float) -> _ProbeState | None:
        if not probe:
            return None
        return _ProbeState(probe=probe, due=now + float(probe.get("initialDelaySeconds") or 0))

    def _exited(self, c: ContainerRunner, code: int, now: float) -> None:
        exit_code = 128 - code if code < 0 else code
        c.terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": c.started_at,
            "finishedAt": _now(),
            "containerID": f"dgd://{c.proc.pid if c.proc else 0}",
        }
        message = termination_message(c.spec, exit_code, c.log, c.log_offset)
        if message:
            c.terminated["message"] = message
        c.proc = None
        c.started = c.ready = False
        restart = self.restart_policy == "Always" or (
            self.restart_policy == "OnFailure" and exit_code != 0
        )
        if not restart:
            return
        # A container that ran for a while starts over with the shortest back-off.
        if now - c.started_mono > 60:
            c.crashes_in_a_row = 0
        c.backoff = min(self.restart_backoff * 2**c.crashes_in_a_row, self.max_backoff)
        c.crashes_in_a_row += 1
        c.restart_due = now + c.backoff
        c.last_terminated, c.terminated = c.terminated, None

    def _probe(self, c: ContainerRunner, now: float) -> bool:
        """Run the probes that are due; True if started/ready changed."""
        before = (c.started, c.ready)
        if not c.started and c.startup is not None:
            if now >= c.startup.due:
                if self._run(c, c.startup, now):
                    c.started = True
                    for later in (c.liveness, c.readiness):
                        if later is not None:
                            later.due = max(later.due, now)
                elif c.startup.failures >= c.startup.threshold():
                    self._kill_for(c, "startup")
            return (c.started, c.ready) != before
        if (
            c.liveness is not None
            and now >= c.liveness.due
            and not self._run(c, c.liveness, now)
            and c.liveness.failures >= c.liveness.threshold()
        ):
            self._kill_for(c, "liveness")
            return True
        if c.readiness is not None and now >= c.readiness.due:
            ok = self._run(c, c.readiness, now)
            if ok:
                c.ready = True
            elif c.readiness.failures >= c.readiness.threshold():
                c.ready = False
        return (c.started, c.ready) != before

    def _run(self, c: ContainerRunner, state: _ProbeState, now: float) -> bool:
        ok = run_probe(state.probe, c.spec, self.listen_ip, c.env, self.pod_dir)
        state.due = now + state.period()
        state.failures = 0 if ok else state.failures + 1
        state.ok = ok
        return ok

    def _kill_for(self, c: ContainerRunner, probe: str) -> None:
        with c.log.open("ab") as out:
            out.write(f"--- {_now()} dgd dev kubelet: {probe} probe failed, killing\n".encode())
        self._signal(c, signal.SIGKILL)

    @staticmethod
    def _signal(c: ContainerRunner, sig: signal.Signals) -> None:
        if c.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(c.proc.pid, sig)

    def restart(self, only: str | None = None) -> None:
        """Kill the processes of every container (or only ``only``); the restart policy
        brings them back (what ``dgd.dev/restart`` asks of an executed pod)."""
        with self._lock:
            for c in self.containers:
                if only is None or c.name == only:
                    self._signal(c, signal.SIGKILL)

    # -- ending ---------------------------------------------------------------------------------

    def terminate(self) -> None:
        """SIGTERM every process group; :meth:`tick` SIGKILLs what is left after the grace
        period. :meth:`gone` says when all have exited."""
        with self._lock:
            if self._terminating_until is None:
                self._terminating_until = time.monotonic() + self.grace
                for c in self.containers:
                    c.restart_due = None
                    self._signal(c, signal.SIGTERM)

    def gone(self) -> bool:
        """True when no process of this pod is alive."""
        with self._lock:
            for c in self.containers:
                if c.proc is not None and c.proc.popen is not None:
                    c.proc.popen.poll()
            return all(c.proc is None or not c.proc.alive() for c in self.containers)

    def kill(self, timeout: float = 5.0) -> None:
        """SIGKILL every process group now and reap them (the pod is gone, or we stop)."""
        with self._lock:
            self._terminating_until = time.monotonic()
            for c in self.containers:
                c.restart_due = None
                self._signal(c, signal.SIGKILL)
            for c in self.containers:
                if c.proc is not None and c.proc.popen is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        c.proc.popen.wait(timeout)

    # -- what the kubelet reports -------------------------------------------------------------

    def container_statuses(self, image_of: Callable[[JsonDict], str]) -> list[JsonDict]:
        """Kubernetes container statuses for the pod's containers, as they are now."""
        statuses = []
        with self._lock:
            for c in self.containers:
                if c.proc is not None or (c.command is None and c.started_at):
                    state: JsonDict = {"running": {"startedAt": c.started_at}}
                elif c.terminated is not None:
                    state = {"terminated": c.terminated}
                elif c.restart_due is not None:
                    state = {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off {c.backoff:g}s restarting failed "
                            f"container={c.name}",
                        }
                    }
                else:
                    state = {"waiting": {"reason": "ContainerCreating"}}
                image = image_of(c.spec)
                statuses.append(
                    {
                        "name": c.name,
                        "image": image,
                        "imageID": f"sim://{image}",
                        "containerID": f"dgd://{c.proc.pid}" if c.proc else "",
                        "ready": c.ready and "running" in state,
                        "started": c.started and "running" in state,
                        "restartCount": c.restart_count,
                        "state": state,
                        "lastState": {"terminated": c.last_terminated} if c.last_terminated else {},
                    }
                )
        return statuses

    def all_terminated(self) -> bool:
        """True when no container runs and none will restart (restartPolicy said no)."""
        with self._lock:
            return all(
                c.command is not None and c.terminated is not None and c.restart_due is None
                for c in self.containers
            )
