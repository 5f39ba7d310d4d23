"""Worker processes: status endpoints, SIGTERM drain, SIGKILL mid-stream, registration expiry."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from tests.runtime.support import WorkerProcess, eventually

from dgd_runtime.local.nats_server import NatsServer
from dgd_runtime.protocol import (
    NoWorkersError,
    PreprocessedRequest,
    SamplingOptions,
    WorkerInstance,
    WorkerLostError,
)
from dgd_runtime.router.client import RoutedClient
from dgd_runtime.worker.cli import parse_endpoint
from dgd_runtime.worker.model_dir import read_model_dir

pytestmark = pytest.mark.runtime

StartProcess = Callable[..., WorkerProcess]
MakeClient = Callable[..., Awaitable[RoutedClient]]


def _req(rid: str, max_tokens: int) -> PreprocessedRequest:
    return PreprocessedRequest(
        rid, "dgd-tiny", list(range(1, 40)), SamplingOptions(max_tokens=max_tokens, ignore_eos=True)
    )


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except urllib.error.URLError as exc:  # not listening yet
        return 0, str(exc)


def test_read_model_dir(tiny_model_dir: Path) -> None:
    info = read_model_dir(str(tiny_model_dir))
    assert info.context_length == 4096
    assert info.vocab_size == 1000  # base vocab: generated ids never hit special tokens
    assert info.eos_token_ids == (1002, 1000)
    with pytest.raises(ValueError, match=r"no config\.json"):
        read_model_dir(str(tiny_model_dir / "missing"))


def test_parse_endpoint() -> None:
    assert parse_endpoint("dyn://ns.prefill.generate", "x", "y") == ("ns", "prefill", "generate")
    assert parse_endpoint("generate", "dynamo", "backend") == ("dynamo", "backend", "generate")
    with pytest.raises(ValueError, match=r"dyn://namespace\.component\.endpoint"):
        parse_endpoint("dyn://a.b", "x", "y")


async def test_status_endpoints(worker_processes: StartProcess, make_client: MakeClient) -> None:
    proc = worker_processes()
    status, body = await asyncio.to_thread(_get, proc.system_url + "/live")
    assert status == 200
    assert json.loads(body)["status"] == "live"
    status, body = await asyncio.to_thread(_get, proc.system_url + "/health")
    assert status == 200
    assert json.loads(body)["status"] == "ready"
    assert json.loads(body)["endpoints"] == {"generate": "ready"}
    status, body = await asyncio.to_thread(_get, proc.system_url + "/metrics")
    assert status == 200
    assert "dynamo_component_requests_total" in body
    assert 'vllm:num_requests_running{engine="mock",model_name="dgd-tiny"} 0.0' in body

    client = await make_client()
    await client.wait_for_workers(10)
    assert [o async for o in client.generate(_req("m1", 6))][-1].finish_reason == "length"
    _, body = await asyncio.to_thread(_get, proc.system_url + "/metrics")
    labels = '{engine="mock",model_name="dgd-tiny"}'
    assert f"vllm:time_to_first_token_seconds_count{labels} 1.0" in body
    assert f"vllm:e2e_request_latency_seconds_count{labels} 1.0" in body
    assert f"vllm:inter_token_latency_seconds_count{labels} 1.0" in body
    assert f"vllm:generation_tokens_total{labels} 6.0" in body


async def test_sigterm_deregisters_and_finishes_inflight(
    worker_processes: StartProcess, make_client: MakeClient
) -> None:
    proc = worker_processes(speedup_ratio=10.0)
    client = await make_client()
    await client.wait_for_workers(10)
    removals: list[tuple[WorkerInstance, bool]] = []
    client._watcher.on_removed.append(lambda inst, expired: removals.append((inst, expired)))

    stream = client.generate(_req("drain", 300))  # ~0.2 s of simulated decode
    first = await stream.__anext__()
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    outs = [first] + [out async for out in stream]
    assert outs[-1].finish_reason == "length"
    assert sum(len(o.token_ids) for o in outs) == 300
    assert await asyncio.to_thread(proc.wait_exit, 30) == 0
    await eventually(lambda: bool(removals), 10, "deregistration")
    assert removals[0][1] is False  # removed by its "down" message, not by expiry


async def test_sigkill_mid_stream_fails_fast_and_next_request_goes_elsewhere(
    worker_processes: StartProcess, make_client: MakeClient
) -> None:
    victim = worker_processes(speedup_ratio=1.0)
    client = await make_client(router_mode="round-robin")
    await client.wait_for_workers(10)
    stream = client.generate(_req("doomed", 100_000))
    await stream.__anext__()

    survivor = worker_processes(speedup_ratio=10.0)
    await client.wait_for_workers(10, count=2)
    await asyncio.to_thread(victim.kill)
    with pytest.raises(WorkerLostError):
        async for _ in stream:
            pass
    # The dead worker may still be registered (TTL); the request must still succeed.
    for i in range(3):
        outs = [o async for o in client.generate(_req(f"after{i}", 5))]
        assert outs[-1].finish_reason == "length"
    assert survivor.pid is not None


async def test_registration_expires_after_sigkill(
    worker_processes: StartProcess, make_client: MakeClient
) -> None:
    proc = worker_processes()
    client = await make_client()
    await client.wait_for_workers(10)
    removals: list[bool] = []
    client._watcher.on_removed.append(lambda inst, expired: removals.append(expired))
    await asyncio.to_thread(proc.kill)
    await eventually(lambda: client.instances() == [], 20, "the killed worker to expire")
    assert removals == [True]


async def test_worker_waits_for_nats_and_reports_notready(
    tmp_path: Path, tiny_model_dir: Path, make_client: MakeClient
) -> None:
    late = NatsServer(store_dir=str(tmp_path / "late"))
    (tmp_path / "late").mkdir()
    proc = WorkerProcess(late.url, str(tiny_model_dir), model_name="dgd-tiny").start(wait=False)
    try:

        async def live() -> bool:
            status, _ = await asyncio.to_thread(_get, proc.system_url + "/live")
            return status == 200

        await eventually(live, 30, "/live while NATS is down", interval=0.1)
        status, body = await asyncio.to_thread(_get, proc.system_url + "/health")
        assert status == 503
        assert json.loads(body)["status"] == "notready"
        await asyncio.to_thread(late.start)
        await asyncio.to_thread(proc.wait_ready, 30)
        status, _ = await asyncio.to_thread(_get, proc.system_url + "/health")
        assert status == 200
        assert await asyncio.to_thread(proc.terminate) == 0
    finally:
        proc.kill()
        late.close()


async def test_client_gives_up_connecting_after_its_timeout(tmp_path: Path) -> None:
    nowhere = NatsServer(store_dir=str(tmp_path))
    with pytest.raises(ConnectionError, match="cannot connect to NATS"):
        await RoutedClient.connect(nowhere.url, namespace="dynamo", connect_timeout=0.5)


async def test_worker_process_survives_a_nats_restart(
    worker_processes: StartProcess, make_client: MakeClient, nats_server: NatsServer
) -> None:
    proc = worker_processes()
    client = await make_client()
    await client.wait_for_workers(10)
    await asyncio.to_thread(nats_server.restart, 1.0)

    async def request_succeeds() -> bool:
        try:
            outs = [o async for o in client.generate(_req("after-restart", 4))]
        except (NoWorkersError, WorkerLostError):
            return False
        return outs[-1].finish_reason == "length"

    await eventually(request_succeeds, 30, "a request after the nats-server restart", interval=0.2)
    assert proc.pid is not None  # no crash
    status, _ = await asyncio.to_thread(_get, proc.system_url + "/health")
    assert status == 200
