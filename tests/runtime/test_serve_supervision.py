"""`dgd serve` keeps a graph up: a worker killed during 100 streams is restarted, nobody hangs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from tests.helpers import wait_for
from tests.runtime.test_serve import _alive

from dgd_runtime.local.nats_server import free_port

pytestmark = pytest.mark.runtime

ROOT = Path(__file__).resolve().parents[2]
MODEL = "Qwen/Qwen2.5-1.5B-Instruct"
STREAMS = 100
HANG_GUARD_S = 120.0
SERVE = (sys.executable, "-m", "dgd_operator", "serve")


class ServeProcess:
    """`dgd serve FILE` as a subprocess whose stdout lines are collected by a thread."""

    def __init__(self, graph: Path, port: int, tmp_path: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self.stderr_path = tmp_path / "serve.stderr"
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*SERVE, str(graph), "--port", str(port), "--speedup-ratio", "4"],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            # TMPDIR: nats-server's store goes under the test's directory, so a SIGKILLed
            # `dgd serve` (no cleanup runs) leaves nothing in /tmp.
            env={**os.environ, "DGD_CACHE": str(tmp_path / "cache"), "TMPDIR": str(tmp_path)},
            text=True,
        )
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines) + self.stderr_path.read_text()

    def line(self, pattern: str) -> re.Match[str] | None:
        return next((m for line in self.lines if (m := re.search(pattern, line))), None)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        self._pump.join(5)
        self._stderr.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


async def _stream(client: httpx.AsyncClient, started: asyncio.Event, first: list[int]) -> str:
    """One streamed chat completion: ``done``, ``error`` (an error event came) or what broke."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": 150,
        "ignore_eos": True,
        "stream": True,
    }
    outcome = "ended without [DONE] or an error event"
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
            if resp.status_code != 200:
                return f"status {resp.status_code}"
            async for line in resp.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line.removeprefix("data: ")
                if data == "[DONE]":
                    return "error" if outcome == "error" else "done"
                if "error" in orjson.loads(data):
                    outcome = "error"
                elif not first:
                    first.append(1)
                    started.set()
                elif len(first) < STREAMS:
                    first.append(1)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return outcome


async def _streams_with_a_kill(url: str, victim: int) -> list[str]:
    first: list[int] = []
    started = asyncio.Event()
    limits = httpx.Limits(max_connections=STREAMS + 10)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        tasks = [asyncio.create_task(_stream(client, started, first)) for _ in range(STREAMS)]
        await asyncio.wait_for(started.wait(), 60)
        # Kill while most streams run: half of them have produced a token.
        while len(first) < STREAMS // 2 and not all(t.done() for t in tasks):
            await asyncio.sleep(0.01)
        os.kill(victim, signal.SIGKILL)
        return await asyncio.wait_for(asyncio.gather(*tasks), HANG_GUARD_S)


def _chat(url: str) -> int:
    """Status of a short chat completion."""
    resp = httpx.post(
        f"{url}/v1/chat/completions",
        timeout=30,
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
    )
    return resp.status_code


def test_killed_worker_is_restarted_while_streams_end_cleanly(tmp_path: Path) -> None:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "recipes" / "vllm-agg.yaml").read_text())
    doc["spec"]["services"]["worker"]["replicas"] = 2
    graph = tmp_path / "agg2.yaml"
    graph.write_text(yaml.safe_dump(doc))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = ServeProcess(graph, port, tmp_path)
    pids: list[int] = []
    log_dir: Path | None = None
    try:
        wait_for(lambda: serve.line(r"^Press Ctrl-C"), 120, 0.2, "dgd serve is up")
        up = serve.line(r"^pids: ([\d ]+)")
        assert up is not None
        pids = [int(p) for p in up.group(1).split()]
        logs = serve.line(r"logs: (\S+)")
        assert logs is not None
        log_dir = Path(logs.group(1))
        assert len(pids) == 4, serve.output()  # nats-server, two workers, frontend
        victim = pids[1]

        outcomes = asyncio.run(_streams_with_a_kill(url, victim))

        broken = [o for o in outcomes if o not in ("done", "error")]
        assert broken == [], serve.output()
        assert outcomes.count("done") >= 1
        # The kill was reported, with the other worker still serving.
        killed = wait_for(
            lambda: serve.line(rf"worker-\d \(pid {victim}\) was killed by SIGKILL.*"),
            10,
            0.1,
            "the exit is reported",
        )
        assert "worker: 1/2 ready, serving on the rest meanwhile" in killed.group(0)
        # Later requests all succeed, starting right away (the other worker serves them).
        assert [_chat(url) for _ in range(20)] == [200] * 20
        # The worker comes back.
        restarted = wait_for(
            lambda: serve.line(r"restarted \(pid (\d+), restart 1\)"), 30, 0.1, "restart"
        )
        pids.append(int(restarted.group(1)))
        wait_for(lambda: serve.line(r"ready again .* worker: 2/2 ready"), 60, 0.2, "back")
        assert [_chat(url) for _ in range(10)] == [200] * 10
    finally:
        code = serve.stop()
        if log_dir is not None:  # kept by dgd serve because a process exited
            shutil.rmtree(log_dir, ignore_errors=True)
    assert code == 0, serve.output()
    wait_for(lambda: not [p for p in pids if _alive(p)], 10, 0.1, "every process gone")


def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = subprocess.run(
            [*SERVE, str(ROOT / "recipes/vllm-agg.yaml"), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert res.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in res.stderr


def test_frontend_and_nats_server_are_restarted(tmp_path: Path) -> None:
    """The frontend (same port) and nats-server (same URL) come back; requests then succeed."""
    port = free_port()
    serve = ServeProcess(ROOT / "recipes/vllm-agg.yaml", port, tmp_path)
    pids: list[int] = []
    log_dir: Path | None = None
    try:
        wait_for(lambda: serve.line(r"^Press Ctrl-C"), 120, 0.2, "dgd serve is up")
        up = serve.line(r"^pids: ([\d ]+)\s+logs: (\S+)")
        assert up is not None
        pids, log_dir = [int(p) for p in up.group(1).split()], Path(up.group(2))
        nats, frontend = pids[0], pids[-1]
        os.kill(frontend, signal.SIGKILL)
        back = wait_for(lambda: serve.line(r"frontend: restarted \(pid (\d+)"), 30, 0.1, "restart")
        pids.append(int(back.group(1)))
        wait_for(lambda: serve.line(r"frontend: ready again"), 60, 0.2, "frontend back")
        assert _chat(serve.url) == 200
        os.kill(nats, signal.SIGKILL)
        again = wait_for(
            lambda: serve.line(r"nats-server \(pid \d+\) was killed by SIGKILL; .*\(pid (\d+)\)"),
            30,
            0.1,
            "nats-server restarted",
        )
        pids.append(int(again.group(1)))
        wait_for(lambda: _chat(serve.url) == 200, 60, 0.5, "requests after nats-server's restart")
    finally:
        code = serve.stop()
        if log_dir is not None:
            shutil.rmtree(log_dir, ignore_errors=True)
    assert code == 0, serve.output()
    assert f"logs kept in {log_dir}" in serve.output()
    wait_for(lambda: not [p for p in pids if _alive(p)], 10, 0.1, "every process gone")


def test_a_killed_dgd_serve_takes_its_processes_along(tmp_path: Path) -> None:
    """SIGKILL of `dgd serve` itself (no cleanup runs): the kernel ends every child."""
    serve = ServeProcess(ROOT / "recipes/vllm-agg.yaml", free_port(), tmp_path)
    pids: list[int] = []
    log_dir: Path | None = None
    try:
        wait_for(lambda: serve.line(r"^Press Ctrl-C"), 120, 0.2, "dgd serve is up")
        up = serve.line(r"^pids: ([\d ]+)\s+logs: (\S+)")
        assert up is not None
        pids, log_dir = [int(p) for p in up.group(1).split()], Path(up.group(2))
        assert len(pids) == 3  # nats-server, the worker, the frontend
        serve.proc.kill()
        wait_for(lambda: not [p for p in pids if _alive(p)], 30, 0.1, "every child gone")
        pids = []
    finally:
        serve.stop()
        for pid in pids:  # only when the children outlived it: do not leave them behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if log_dir is not None:
            shutil.rmtree(log_dir, ignore_errors=True)
