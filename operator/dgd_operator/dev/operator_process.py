"""`dgd operator` as a child process of a development tool (the demo, the benchmarks).

The operator gets a clean environment: no inherited `DGD_*` variable and no in-cluster login,
only the kubeconfig and the variables of the `OperatorSettings` given (`settings.to_environ`),
with the health and metrics servers on free loopback ports. It runs in its own session, is
tracked by a PID file, and is stopped by PID.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dgd_operator.dev import processes
from dgd_operator.dev.controlplane import free_port
from dgd_operator.settings import ENV_PREFIX, OperatorSettings, to_environ

OPERATOR = "dgd-operator"
"""Default process name (PID file `<run_dir>/dgd-operator.pid`, log `<log_dir>/dgd-operator.log`)."""


class OperatorStartError(RuntimeError):
    """The operator exited or did not report ready; the message ends with its log's tail."""


@dataclass
class OperatorProcess:
    """A running `dgd operator` we started."""

    proc: processes.ManagedProcess
    run_dir: Path
    ready_url: str
    """Its `/readyz`."""
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

    def peak_rss_mb(self) -> float:
        """VmHWM (peak resident set) of the operator process, in MiB (0 when unknown)."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        return 0.0


def operator_environ(kubeconfig: Path, settings: OperatorSettings) -> dict[str, str]:
    """The process environment for `settings`: ours minus `DGD_*` and the in-cluster login."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.pop("KUBERNETES_SERVICE_HOST", None)  # never the in-cluster login
    env.update(to_environ(settings), KUBECONFIG=str(kubeconfig), PYTHONUNBUFFERED="1")
    return env


def start_operator(
    kubeconfig: Path,
    settings: OperatorSettings,
    *,
    run_dir: Path,
    log_dir: Path,
    name: str = OPERATOR,
    timeout: float = 60.0,
) -> OperatorProcess:
    """Start `dgd operator` and wait until its readiness endpoint says ready.

    Ready: its webhook (if on) serves, and it reconciles (or, with leader election, waits as a
    standby).

    `settings` says what to watch and how; its bind address and ports are replaced by loopback
    and free ports. An operator left running under the same `name` (an earlier `--keep` run)
    is stopped first. Raises `OperatorStartError` when it exits or stays unhealthy.
    """
    old = processes.load(name, run_dir, log_dir)
    if old is not None:
        processes.stop(old, run_dir)
    settings = dataclasses.replace(
        settings, bind_address="127.0.0.1", health_port=free_port(), metrics_port=free_port()
    )
    log = log_dir / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    # The `dgd` console script when installed (so `pgrep -af "dgd operator"` finds it).
    script = Path(sys.executable).parent / "dgd"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "dgd_operator"]
    proc = processes.spawn(
        name,
        [*argv, "operator"],
        log=log,
        pid_dir=run_dir,
        env=operator_environ(kubeconfig, settings),
    )
    operator = OperatorProcess(
        proc,
        run_dir,
        f"http://127.0.0.1:{settings.health_port}/readyz",
        f"http://127.0.0.1:{settings.metrics_port}/metrics",
    )
    deadline = time.monotonic() + timeout
    while not _http_ok(operator.ready_url):
        if not proc.alive():
            operator.stop()
            raise OperatorStartError(
                f"the operator exited at startup (code {proc.exit_code()}); its log:\n"
                + operator.log_tail()
            )
        if time.monotonic() > deadline:
            operator.stop()
            raise OperatorStartError(
                f"the operator did not report ready in {timeout:g}s; its log:\n"
                + operator.log_tail()
            )
        time.sleep(0.1)
    return operator


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False
