"""Every query of the graph-serving dashboard reads metrics our runtime really exports.

A real nats-server, a mock-engine worker process and a frontend process (as `dgd serve` runs
them), both logging JSON lines as Dynamo's images ask; after a few requests, the metric names of
each dashboard query must have samples in the frontend's or the worker's live `/metrics`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tests.observability import SERVING_DASHBOARD, dashboard_queries, missing
from tests.runtime.support import WorkerProcess, eventually

from dgd_runtime.local.nats_server import NatsServer, free_port

pytestmark = pytest.mark.runtime

MODEL = "dgd-tiny"
NAMESPACE = "dash"
HANG_GUARD = 30.0
JSON_LOGS = {"DYN_LOGGING_CONSOLE_FORMAT": "jsonl"}


async def test_serving_dashboard_queries_have_data(
    nats_server: NatsServer, tiny_model_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        **JSON_LOGS,
        "NATS_SERVER": nats_server.url,
        "DYN_NAMESPACE": NAMESPACE,
        "DYN_HTTP_PORT": str(port),
        "DYN_LOG": "debug",
    }
    log_path = tmp_path / "frontend.log"
    with log_path.open("wb") as log:
        frontend = subprocess.Popen(
            [sys.executable, "-m", "dgd_runtime.frontend"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    worker = WorkerProcess(
        nats_server.url,
        str(tiny_model_dir),
        namespace=NAMESPACE,
        model_name=MODEL,
        speedup_ratio=1000.0,
        env=JSON_LOGS,
    )
    try:
        await asyncio.to_thread(worker.start)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            async def listed() -> bool:
                try:
                    models = (await http.get("/v1/models")).json()["data"]
                except httpx.TransportError:
                    return False
                return [m["id"] for m in models] == [MODEL]

            await eventually(listed, HANG_GUARD, f"the frontend to list {MODEL}", interval=0.1)
            for stream in (False, True, False):
                body = {
                    "model": MODEL,
                    "messages": [{"role": "user", "content": "Tell me a story"}],
                    "max_tokens": 8,
                    "ignore_eos": True,
                    "stream": stream,
                }
                response = await http.post("/v1/chat/completions", json=body)
                assert response.status_code == 200, response.text
            # model_ready is refreshed by /health, which the pod's readiness probe calls.
            assert (await http.get("/health")).status_code == 200
            frontend_metrics = (await http.get("/metrics")).text
        async with httpx.AsyncClient(timeout=10) as http:
            worker_metrics = (await http.get(worker.system_url + "/metrics")).text
        queries = dashboard_queries(SERVING_DASHBOARD)
        assert len(queries) >= 15
        assert missing(queries, frontend_metrics, worker_metrics) == {}
    finally:
        frontend.send_signal(signal.SIGTERM)
        try:
            frontend.wait(15)
        finally:
            if frontend.poll() is None:
                frontend.kill()
                frontend.wait()
            worker.kill()
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    assert lines, "the frontend logged nothing at debug"
    for line in lines:
        record = json.loads(line)
        assert {"time", "level", "target", "message"} <= set(record)
