"""Background processes tracked by PID file, stopped by PID (never by name).

A PID file holds ``<pid> <start-time>`` where start-time is field 22 of ``/proc/<pid>/stat``
(clock ticks since boot). Checking it before signalling means a recycled PID is never killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


@dataclasses.dataclass
class ManagedProcess:
    """One process we started: its name, PID, start time, log file and (if ours) Popen handle."""

    name: str
    pid: int
    start_time: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        """True while the process exists, is not a zombie and is the one we started."""
        stat = _proc_stat(self.pid)
        return stat is not None and stat[1] != "Z" and stat[2] == self.start_time

    def exit_code(self) -> int | None:
        """The exit code if we are the parent and it exited, else None."""
        return self.popen.poll() if self.popen is not None else None


def _proc_stat(pid: int) -> tuple[str, str, int] | None:
    """(comm, state, starttime) of ``pid`` from /proc, or None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses; it ends at the last ')'.
    head, _, rest = raw.rpartition(")")
    fields = rest.split()
    comm = head.partition("(")[2]
    return comm, fields[0], int(fields[19])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid``, all its threads (0 if gone)."""
    try:
        rest = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2]
    except OSError:
        return 0.0
    fields = rest.split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_PR_SET_PDEATHSIG = 1


def _pdeathsig_hook() -> Callable[[], None] | None:
    """A preexec function that asks for SIGKILL on parent death; None where unsupported.

    libc is loaded here, in the parent, so the forked child only makes one plain C call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return hook


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log: Path,
    pid_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    die_with_parent: bool = False,
) -> ManagedProcess:
    """Start ``argv`` in its own session (stdio to ``log``) and write ``<pid_dir>/<name>.pid``.

    With ``die_with_parent`` the kernel SIGKILLs the process when the thread that started it
    exits (Linux ``PR_SET_PDEATHSIG``): a test run that is killed leaves nothing behind.
    Without it the process outlives us (``dgd dev up``).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_dir.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd else None,
            preexec_fn=_pdeathsig_hook() if die_with_parent else None,
        )
    stat = _proc_stat(popen.pid)
    start_time = stat[2] if stat else 0
    proc = ManagedProcess(name=name, pid=popen.pid, start_time=start_time, log=log, popen=popen)
    (pid_dir / f"{name}.pid").write_text(f"{popen.pid} {start_time}\n")
    return proc


def load(name: str, pid_dir: Path, log_dir: Path) -> ManagedProcess | None:
    """Read ``<pid_dir>/<name>.pid`` (written by :func:`spawn`), or None if absent/corrupt."""
    try:
        pid_text, start_text = (pid_dir / f"{name}.pid").read_text().split()
        return ManagedProcess(
            name=name, pid=int(pid_text), start_time=int(start_text), log=log_dir / f"{name}.log"
        )
    except (OSError, ValueError):
        return None


def stop(proc: ManagedProcess, pid_dir: Path | None = None, timeout: float = 10.0) -> bool:
    """SIGTERM ``proc``, wait up to ``timeout`` s, then SIGKILL. Returns True if it is gone.

    Only signals the PID if it still has the recorded start time.
    """
    if proc.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc.alive() and time.monotonic() < deadline:
            if proc.popen is not None and proc.popen.poll() is not None:
                break
            time.sleep(0.05)
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
            while proc.alive() and time.monotonic() < deadline:
                if proc.popen is not None and proc.popen.poll() is not None:
                    break
                time.sleep(0.05)
    if proc.popen is not None:
        try:
            proc.popen.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            return False
    if pid_dir is not None:
        (pid_dir / f"{proc.name}.pid").unlink(missing_ok=True)
    return not proc.alive()


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file (empty string if unreadable)."""
    try:
        data = path.read_bytes()[-16384:]
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
