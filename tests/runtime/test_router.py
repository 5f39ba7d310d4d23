"""Router modes end to end: round-robin, random, KV-aware (prefix goes to the warm worker)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import pytest
from tests.runtime.support import eventually

from dgd_runtime.kv.hashing import block_hashes
from dgd_runtime.protocol import PreprocessedRequest, SamplingOptions
from dgd_runtime.router.client import RoutedClient
from dgd_runtime.router.policies import KvPolicy
from dgd_runtime.worker.service import Worker

pytestmark = pytest.mark.runtime

StartWorker = Callable[..., Awaitable[Worker]]
MakeClient = Callable[..., Awaitable[RoutedClient]]


def _req(rid: str, tokens: list[int], max_tokens: int = 3) -> PreprocessedRequest:
    return PreprocessedRequest(
        rid, "dgd-tiny", tokens, SamplingOptions(max_tokens=max_tokens, ignore_eos=True)
    )


async def _first_chunk_cached(client: RoutedClient, req: PreprocessedRequest) -> int:
    cached = None
    async for out in client.generate(req):
        if cached is None:
            cached = out.cached_tokens
    return cached or 0


def _served(worker: Worker) -> int:
    assert worker.server is not None
    return worker.server.counters.requests_total


async def test_round_robin_alternates(start_worker: StartWorker, make_client: MakeClient) -> None:
    a, b = await start_worker(), await start_worker()
    client = await make_client(router_mode="round-robin")
    await client.wait_for_workers(10, count=2)
    for i in range(6):
        await _first_chunk_cached(client, _req(f"r{i}", [i + 1] * 5))
    assert (_served(a), _served(b)) == (3, 3)


async def test_random_spreads(start_worker: StartWorker, make_client: MakeClient) -> None:
    a, b = await start_worker(), await start_worker()
    client = await make_client(router_mode="random", rng=random.Random(4))
    await client.wait_for_workers(10, count=2)
    for i in range(20):
        await _first_chunk_cached(client, _req(f"r{i}", [i + 1] * 5))
    assert _served(a) + _served(b) == 20
    assert _served(a) > 0
    assert _served(b) > 0


async def test_router_mode_from_env(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DYN_ROUTER_MODE", "kv")
    client = await make_client()
    assert client.router_mode == "kv"


async def test_kv_routes_a_repeated_prefix_to_the_same_worker(
    start_worker: StartWorker, make_client: MakeClient
) -> None:
    workers = [await start_worker(), await start_worker()]
    client = await make_client(router_mode="kv", rng=random.Random(1))
    await client.wait_for_workers(10, count=2)
    policy = client.policy
    assert isinstance(policy, KvPolicy)

    system_prompt = list(range(100, 140))  # 10 blocks of 4
    assert await _first_chunk_cached(client, _req("first", [*system_prompt, 1, 2])) == 0
    warm = next(w for w in workers if _served(w) == 1)
    hashes = block_hashes(system_prompt, 4)
    warm_id = warm.instance.instance_id
    # Routed there, the prefix is predicted at once; its "stored" events then confirm it.
    await eventually(
        lambda: (
            policy.index.find_matches(hashes).get(warm_id, 0) == 10
            and policy.index.predicted(warm_id) == 0
        ),
        10,
        "KV events of the first request in the router's index",
    )
    for i in range(4):
        cached = await _first_chunk_cached(
            client, _req(f"again{i}", [*system_prompt, 50 + i, 7, 7])
        )
        assert cached == 40
    assert _served(warm) == 5


async def test_kv_router_learns_existing_caches_from_snapshots(
    start_worker: StartWorker, make_client: MakeClient
) -> None:
    worker = await start_worker()
    other = await start_worker()
    prompt = list(range(200, 232))
    warmup = await make_client(router_mode="round-robin")
    await warmup.wait_for_workers(10, count=2)
    # Warm exactly one worker's cache: send to it until it has served one request.
    while _served(worker) == 0:
        await _first_chunk_cached(warmup, _req(f"w{_served(other)}", prompt))
    late = await make_client(router_mode="kv")
    await late.wait_for_workers(10, count=2)
    policy = late.policy
    assert isinstance(policy, KvPolicy)
    hashes = block_hashes(prompt, 4)
    await eventually(
        lambda: policy.index.find_matches(hashes).get(worker.instance.instance_id, 0) == 8,
        10,
        "the snapshot of a worker that was warm before the router started",
    )


async def test_kv_router_recovers_lost_events_from_heartbeats(
    start_worker: StartWorker, make_client: MakeClient
) -> None:
    worker = await start_worker()
    client = await make_client(router_mode="kv")
    await client.wait_for_workers(10)
    policy = client.policy
    assert isinstance(policy, KvPolicy)
    prompt = list(range(300, 332))
    await _first_chunk_cached(client, _req("warm", prompt))
    iid = worker.instance.instance_id
    hashes = block_hashes(prompt, 4)
    await eventually(lambda: policy.index.find_matches(hashes).get(iid) == 8, 10, "events applied")
    # Pretend the last event batch never arrived (as when NATS drops it during a restart).
    policy.kv_reset(iid, [])
    client._kv_sync[iid].last_seq -= 1
    await eventually(
        lambda: policy.index.find_matches(hashes).get(iid) == 8,
        15,
        "a heartbeat-triggered resync restoring the worker's cache view",
    )
