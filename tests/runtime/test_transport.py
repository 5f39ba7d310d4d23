"""Request plane over a real nats-server: streaming, back-pressure, cancellation, reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from tests.runtime.support import eventually

from dgd_runtime.local.nats_server import NatsServer
from dgd_runtime.protocol import (
    EngineOutput,
    NoWorkersError,
    PreprocessedRequest,
    RuntimeProtocolError,
    SamplingOptions,
)
from dgd_runtime.router.client import RoutedClient
from dgd_runtime.transport.server import EndpointServer
from dgd_runtime.worker.service import Worker

pytestmark = pytest.mark.runtime

StartWorker = Callable[..., Awaitable[Worker]]
MakeClient = Callable[..., Awaitable[RoutedClient]]


def _req(
    rid: str, tokens: list[int], max_tokens: int, model: str = "dgd-tiny"
) -> PreprocessedRequest:
    return PreprocessedRequest(
        rid, model, tokens, SamplingOptions(max_tokens=max_tokens, ignore_eos=True)
    )


async def _run(client: RoutedClient, req: PreprocessedRequest) -> list[EngineOutput]:
    return [out async for out in client.generate(req)]


@pytest.mark.parametrize("batched", [True, False], ids=["batched-frames", "per-inbox-frames"])
async def test_generate_streams_every_token(
    start_worker: StartWorker,
    make_client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
    batched: bool,
) -> None:
    if not batched:  # a worker from before batched frames: its record lists no features
        monkeypatch.setattr(EndpointServer, "FEATURES", ())
    worker = await start_worker()
    client = await make_client()
    await client.wait_for_workers(10)
    assert client.instances()[0].features == (("mux",) if batched else ())
    assert [m.name for m in client.models()] == ["dgd-tiny"]
    assert client.models()[0].kv_block_size == 4

    prompt = list(range(1, 22))
    outs = await _run(client, _req("r1", prompt, 50))
    assert sum(len(o.token_ids) for o in outs) == 50
    assert outs[-1].finish_reason == "length"
    assert outs[0].cached_tokens == 0
    assert all(o.finish_reason is None for o in outs[:-1])

    again = await _run(client, _req("r2", prompt, 5))
    assert again[0].cached_tokens == 20  # 5 full blocks of 4 reused
    assert worker.server is not None
    assert (worker.server.counters.batches_sent > 0) is batched
    await eventually(lambda: worker.engine.stats().kv_active_blocks == 0, 5, "blocks released")


async def test_a_sink_takes_the_plain_tokens_in_order(
    start_worker: StartWorker, make_client: MakeClient
) -> None:
    await start_worker(speedup_ratio=5.0)  # ~1 ms steps: one token a message, most to the sink
    client = await make_client(window=4)  # credits come from the sink's tokens too
    await client.wait_for_workers(10)
    prompt = list(range(1, 12))
    want = [t for out in await _run(client, _req("same", prompt, 300)) for t in out.token_ids]
    arrived: list[int] = []
    from_sink: list[int] = []

    def sink(token: int) -> bool:
        if token % 5 == 0:
            return False  # declined: the generator yields it, in its place
        arrived.append(token)
        from_sink.append(token)
        return True

    async def consume() -> EngineOutput:
        last = EngineOutput([])
        async for out in client.generate(_req("same", prompt, 300), sink=sink):
            arrived.extend(out.token_ids)
            last = out
        return last

    last = await asyncio.wait_for(consume(), 60)
    assert arrived == want  # same seed (request id): the same 300 tokens, in order
    assert last.finish_reason == "length"
    assert len(from_sink) > 50, len(from_sink)
    assert all(t % 5 for t in from_sink)


async def test_no_workers(make_client: MakeClient) -> None:
    client = await make_client()
    with pytest.raises(NoWorkersError):
        await client.wait_for_workers(0.3)
    with pytest.raises(NoWorkersError):
        await _run(client, _req("r", [1, 2, 3], 4))


async def test_unknown_model(start_worker: StartWorker, make_client: MakeClient) -> None:
    await start_worker()
    client = await make_client()
    await client.wait_for_workers(10)
    with pytest.raises(NoWorkersError, match="no live worker serves model 'other'"):
        await _run(client, _req("r", [1, 2, 3], 4, model="other"))


async def test_other_namespace_is_invisible_unless_prefix(
    start_worker: StartWorker, make_client: MakeClient
) -> None:
    await start_worker(namespace="dynamo-abc123")
    exact = await make_client(namespace="dynamo")
    prefixed = await make_client(namespace="dynamo", namespace_prefix=True)
    await prefixed.wait_for_workers(10)
    outs = await _run(prefixed, _req("r", [1, 2, 3], 3))
    assert outs[-1].finish_reason == "length"
    assert exact.instances() == []


async def test_cancellation_reaches_the_engine(
    start_worker: StartWorker, make_client: MakeClient
) -> None:
    worker = await start_worker(speedup_ratio=1.0)
    client = await make_client()
    await client.wait_for_workers(10)
    stream = client.generate(_req("long", list(range(1, 30)), 100_000))
    first = await stream.__anext__()
    assert first.finish_reason is None
    assert worker.engine.stats().num_running == 1
    await stream.aclose()
    assert worker.server is not None
    server = worker.server
    await eventually(
        lambda: server.counters.cancellations_total == 1, 10, "cancel message at the worker"
    )
    await eventually(lambda: worker.engine.stats().num_running == 0, 10, "sequence aborted")
    await eventually(lambda: worker.engine.stats().kv_active_blocks == 0, 10, "KV blocks freed")
    assert server.inflight == 0


async def test_slow_consumer_pushes_back_into_the_engine(
    start_worker: StartWorker, make_client: MakeClient
) -> None:
    worker = await start_worker(speedup_ratio=1_000_000.0, max_pending_tokens=8)
    client = await make_client(window=4)
    await client.wait_for_workers(10)
    stream = client.generate(_req("bp", [1, 2, 3, 4, 5], 3000))
    first = await stream.__anext__()
    await asyncio.sleep(0.5)  # the consumer stalls
    generated = worker.engine.stats().generated_tokens_total
    # window messages in flight + one per side being assembled, each at most max_pending tokens
    assert generated <= (4 + 3) * 8 + 8
    total = len(first.token_ids)
    async for out in stream:
        total += len(out.token_ids)
    assert total == 3000
    assert worker.engine.stats().generated_tokens_total == 3000


async def test_client_that_vanishes_is_cancelled_on_the_worker(
    start_worker: StartWorker, make_client: MakeClient, nats_server: NatsServer
) -> None:
    worker = await start_worker(speedup_ratio=1.0)
    client = await RoutedClient.connect(nats_server.url, namespace="dynamo")
    await client.wait_for_workers(10)
    stream = client.generate(_req("orphan", list(range(1, 10)), 100_000))
    await stream.__anext__()
    assert worker.server is not None and worker.server.inflight == 1
    # The frontend dies: its connection drops without any cancel message.
    await client._nc.close()
    server = worker.server
    await eventually(lambda: server.inflight == 0, 15, "orphaned stream cancelled")
    assert server.counters.client_gone_total == 1
    await eventually(lambda: worker.engine.stats().kv_active_blocks == 0, 5, "KV blocks freed")
    await stream.aclose()
    await client.close()


async def test_nats_restart_reconnects_both_sides(
    start_worker: StartWorker, make_client: MakeClient, nats_server: NatsServer
) -> None:
    await start_worker()
    client = await make_client()
    await client.wait_for_workers(10)
    assert (await _run(client, _req("before", [1, 2, 3], 5)))[-1].finish_reason == "length"

    await asyncio.to_thread(nats_server.restart, 0.5)

    async def request_succeeds() -> bool:
        try:
            outs = await _run(client, _req("after", [1, 2, 3], 5))
        except NoWorkersError:
            return False
        return outs[-1].finish_reason == "length"

    await eventually(request_succeeds, 30, "a request after the nats-server restart", interval=0.2)
    assert len(client.instances()) == 1


async def test_request_over_max_payload_is_a_clear_error(
    start_worker: StartWorker, make_client: MakeClient
) -> None:
    await start_worker()
    client = await make_client()
    await client.wait_for_workers(10)
    with pytest.raises(RuntimeProtocolError, match="max_payload"):
        await _run(client, _req("huge", [123_456] * 200_000, 1))
    # The worker was not blamed: the next request is served normally.
    assert (await _run(client, _req("small", [1, 2, 3], 2)))[-1].finish_reason == "length"
