"""Shared helpers of the runtime tests: worker subprocesses (stopped by PID) and polling."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from nats.aio.client import Client as NatsClient

from dgd_runtime.local.nats_server import free_port
from dgd_runtime.transport.nats_conn import connect_nats

_READY = re.compile(r"dgd worker ready instance=(\S+) subject=(\S+)")


class WorkerProcess:
    """One mock worker subprocess bound to 127.0.0.1 (system port on a free port)."""

    def __init__(
        self,
        nats_url: str,
        model_path: str,
        *,
        namespace: str = "dynamo",
        model_name: str | None = None,
        speedup_ratio: float = 10.0,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        """Prepare (do not start) a worker; call :meth:`start`."""
        self.system_port = free_port()
        self.args = [
            sys.executable, "-m", "dgd_runtime.worker",
            "--model-path", model_path,
            "--nats-server", nats_url,
            "--namespace", namespace,
            "--speedup-ratio", str(speedup_ratio),
            "--system-host", "127.0.0.1",
            "--system-port", str(self.system_port),
            "--log-level", "warning",
        ]  # fmt: skip
        if model_name:
            self.args += ["--model-name", model_name]
        self.args += list(extra_args)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.instance_id = ""
        self.subject = ""
        self.output: list[str] = []
        self._ready = threading.Event()
        self._pump_thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """PID while running."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    @property
    def system_url(self) -> str:
        """Base URL of the status server."""
        return f"http://127.0.0.1:{self.system_port}"

    def start(self, timeout: float = 30.0, *, wait: bool = True) -> WorkerProcess:
        """Start and (with ``wait``) wait for the "ready" line (registered in discovery)."""
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
        )
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> WorkerProcess:
        """Wait for the "ready" line."""
        if not self._ready.wait(timeout):
            self.kill()
            raise RuntimeError(
                f"worker did not become ready in {timeout}s:\n{''.join(self.output)}"
            )
        if not self.instance_id:
            raise RuntimeError(f"worker exited before ready:\n{''.join(self.output)}")
        return self

    def _pump(self) -> None:
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line)
            m = _READY.search(line)
            if m:
                self.instance_id, self.subject = m.group(1), m.group(2)
                self._ready.set()
        self._ready.set()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful drain) and wait; returns the exit code."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait(timeout)
        self._release()
        return rc

    def kill(self) -> None:
        """SIGKILL (simulated crash) and reap."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        self._release()

    def _release(self) -> None:
        """Close the output pipe once the process is gone."""
        proc = self.proc
        if proc is None or proc.poll() is None:
            return
        if self._pump_thread is not None:
            self._pump_thread.join(5)
        if proc.stdout is not None and not proc.stdout.closed:
            proc.stdout.close()

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        rc = self.proc.wait(max(0.0, deadline - time.monotonic()))
        self._release()
        return rc


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float,
    description: str,
    interval: float = 0.02,
) -> None:
    """Poll ``predicate`` (sync or async) until true; ``AssertionError`` naming it on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {description}")
        await asyncio.sleep(interval)


OpenNats = Callable[..., Awaitable[NatsClient]]
"""``open(url, name, **connect_nats options)``: a new connection."""


@contextlib.asynccontextmanager
async def nats_connections() -> AsyncIterator[OpenNats]:
    """Opens NATS connections with the runtime's helper; closes every one on exit."""
    opened: list[NatsClient] = []

    async def open_connection(url: str, name: str, **options: Any) -> NatsClient:
        nc = await connect_nats(url, name=name, **options)
        opened.append(nc)
        return nc

    try:
        yield open_connection
    finally:
        for nc in opened:
            await nc.close()
