"""Keep the processes of a local graph running, the way a kubelet keeps a pod's containers running.

A process that exits is started again after a back-off that doubles with every exit in a row
(1 s, 2 s, 4 s ... capped at 30 s) and is forgotten once the process has stayed up for a minute,
as the kubelet's CrashLoopBackOff does (with shorter times: a local graph should heal fast).
Every exit, restart and return to readiness is reported as one line, so the person watching
`dgd serve` sees what happened without opening a log.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

BACKOFF_BASE_S: Final = 1.0
BACKOFF_CAP_S: Final = 30.0
STABLE_AFTER_S: Final = 60.0


def restart_delay(
    exits_in_a_row: int, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S
) -> float:
    """Seconds to wait before restarting a process that exited ``exits_in_a_row`` times (>= 1)."""
    return float(min(cap, base * 2 ** max(0, exits_in_a_row - 1)))


def describe_exit(returncode: int) -> str:
    """``exited with code 3`` or ``was killed by SIGKILL``."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def exit_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` making the kernel SIGKILL the child when its parent dies (Linux
    ``prctl(PR_SET_PDEATHSIG)``), so a `dgd serve` that is itself killed leaves no process;
    None where that does not exist. libc is resolved now: the forked child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        set_death_signal = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        set_death_signal(pr_set_pdeathsig, int(signal.SIGKILL))

    return preexec


ReadyCheck = Callable[["Process"], bool]


def log_says(marker: str) -> ReadyCheck:
    """Ready once the process's log, since its latest start, contains ``marker``."""
    return lambda process: marker in process.log_since_start()


def port_accepts(host: str, port: int) -> ReadyCheck:
    """Ready once ``host:port`` accepts a TCP connection (and the process is still running)."""

    def check(process: Process) -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return process.running
        except OSError:
            return False

    return check


@dataclass
class Process:
    """One supervised child: how to start it, and what happened to it so far."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    log: Path
    ready_check: ReadyCheck
    group: str = ""
    """Processes of one group serve the same thing (a component's replicas)."""
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    log_offset: int = 0
    restarts: int = 0
    exits_in_a_row: int = 0
    restart_at: float | None = None
    ready: bool = False
    last_exit: int | None = None

    @property
    def running(self) -> bool:
        """True while the current process has not exited."""
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int | None:
        """PID of the current process while it runs."""
        return self.popen.pid if self.running and self.popen is not None else None

    def start(self, now: float) -> None:
        """Start (again), appending to the log; readiness is judged from this start on."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.log_offset = out.tell()
            self.popen = subprocess.Popen(
                self.cmd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                # dies with the thread that starts it: dgd serve's main thread, which outlives it
                preexec_fn=exit_with_parent(),
            )
        self.started_at = now
        self.restart_at = None
        self.ready = False

    def log_since_start(self) -> str:
        """What the current process has written so far."""
        try:
            with open(self.log, "rb") as f:
                f.seek(self.log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 15) -> list[str]:
        """The last ``lines`` lines the current (or last) process wrote."""
        return self.log_since_start().strip().splitlines()[-lines:]

    def describe_exit(self) -> str:
        """``NAME exited with code N`` plus the tail of its log."""
        code = self.popen.returncode if self.popen is not None else None
        text = f"{self.name} {describe_exit(code) if code is not None else 'did not start'}"
        tail = self.log_tail()
        if tail:
            text += f"; last lines of {self.log}:\n  " + "\n  ".join(tail)
        return text

    def terminate(self) -> None:
        """SIGTERM the process, if running."""
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)

    def wait_or_kill(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the process to exit, then SIGKILL it."""
        if self.popen is None:
            return
        try:
            self.popen.wait(max(0.1, timeout))
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


@dataclass
class Supervisor:
    """Starts processes, restarts the ones that exit with back-off, reports what happens."""

    report: Callable[[str], None]
    clock: Callable[[], float] = time.monotonic
    backoff_base: float = BACKOFF_BASE_S
    backoff_cap: float = BACKOFF_CAP_S
    stable_after: float = STABLE_AFTER_S
    processes: list[Process] = field(default_factory=list)
    restarting: bool = False
    """Off while the graph starts (an exit then is a configuration error, reported at once)."""

    def add(self, process: Process) -> Process:
        """Start ``process`` and supervise it."""
        process.start(self.clock())
        self.processes.append(process)
        return process

    def exited(self) -> Process | None:
        """A process whose latest run has exited, if any (checked while the graph starts)."""
        return next(
            (p for p in self.processes if p.popen is not None and p.popen.poll() is not None),
            None,
        )

    def all_ready(self) -> bool:
        """True when every process runs and passed its ready check."""
        self._check_ready(announce=False)
        return all(p.ready for p in self.processes)

    def poll(self) -> None:
        """One round: notice exits, restart processes whose back-off is over, notice readiness."""
        now = self.clock()
        for process in self.processes:
            if process.restart_at is not None:
                if now >= process.restart_at:
                    process.restarts += 1
                    process.start(now)
                    self.report(
                        f"{process.name}: restarted (pid {process.pid}, restart {process.restarts})"
                    )
                continue
            if process.popen is None or process.popen.poll() is None:
                if process.exits_in_a_row and now - process.started_at >= self.stable_after:
                    process.exits_in_a_row = 0  # up long enough: the next exit starts over
                continue
            if not self.restarting:
                continue
            self._on_exit(process, now)
        self._check_ready(announce=True)

    def _on_exit(self, process: Process, now: float) -> None:
        assert process.popen is not None
        code = process.popen.returncode
        process.last_exit = code
        process.ready = False
        process.exits_in_a_row += 1
        delay = restart_delay(process.exits_in_a_row, self.backoff_base, self.backoff_cap)
        process.restart_at = now + delay
        uptime = now - process.started_at
        text = (
            f"{process.name} (pid {process.popen.pid}) {describe_exit(code)} after {uptime:.1f}s; "
            f"restarting it in {delay:.0f}s"
        )
        if process.exits_in_a_row > 1:
            text += f" (exit {process.exits_in_a_row} in a row: back-off)"
        text += f"; {self.group_status(process.group)}"
        if code > 0:
            tail = process.log_tail(5)
            if tail:
                text += "\n  " + "\n  ".join(tail)
        self.report(text)

    def group_status(self, group: str) -> str:
        """``VllmWorker: 1/2 ready`` (with a warning when none is)."""
        members = [p for p in self.processes if p.group == group]
        ready = sum(1 for p in members if p.ready and p.running)
        text = f"{group}: {ready}/{len(members)} ready"
        if ready == 0:
            text += " (its requests fail until one is back)"
        else:
            text += ", serving on the rest meanwhile" if ready < len(members) else ""
        return text

    def _check_ready(self, *, announce: bool) -> None:
        for process in self.processes:
            if process.ready or not process.running:
                continue
            if process.ready_check(process):
                process.ready = True
                if announce and process.restarts:
                    took = self.clock() - process.started_at
                    self.report(
                        f"{process.name}: ready again {took:.1f}s after restart "
                        f"{process.restarts}; {self.group_status(process.group)}"
                    )

    def pids(self) -> list[int]:
        """PIDs of the running processes."""
        return [p.pid for p in self.processes if p.pid is not None]

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every process (last started first), wait, SIGKILL stragglers."""
        self.restarting = False
        for process in reversed(self.processes):
            process.restart_at = None
            process.terminate()
        deadline = time.monotonic() + timeout
        for process in self.processes:
            process.wait_or_kill(deadline - time.monotonic())
