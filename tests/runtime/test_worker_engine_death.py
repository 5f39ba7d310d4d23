"""A worker whose engine dies: streams in progress end with an error, unstarted requests move.

The engine here is the mock behind a gate the test holds, so "the request has produced its
first token" and "the request has produced nothing yet" are states the test sets, not races
it hopes to win: the gate lets one output through, then none, then the engine dies. The real
vLLM counterpart (SIGSTOP/SIGKILL of its engine core) is in ``tests/engine/test_serving.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from tests.runtime.support import eventually

from dgd_runtime.engines.base import EngineLimits, EngineStats
from dgd_runtime.engines.mock import MockEngine, MockEngineConfig
from dgd_runtime.local.nats_server import NatsServer
from dgd_runtime.protocol import (
    FINISH_ERROR,
    EngineOutput,
    ModelCard,
    PreprocessedRequest,
    SamplingOptions,
)
from dgd_runtime.router.client import RoutedClient
from dgd_runtime.worker.service import Worker, WorkerSettings

pytestmark = pytest.mark.runtime

MakeClient = Callable[..., Awaitable[RoutedClient]]

MODEL = "dgd-tiny"
UNSTARTED = 6


class GatedEngine:
    """The mock engine with outputs released one by one, and a death the test triggers.

    ``errors_on_death``: the dying engine ends its requests with an error (what vLLM does when
    its engine core dies), else it leaves them hanging (the worker must end them itself).
    """

    def __init__(self, *, errors_on_death: bool) -> None:
        """A mock engine whose outputs pass freely until :meth:`allow` limits them."""
        self.inner = MockEngine(
            MockEngineConfig(block_size=4, speedup_ratio=100.0, vocab_size=1000)
        )
        self.errors_on_death = errors_on_death
        self.dead = False
        self.accepted = 0
        self._budget: int | None = None
        self._changed = asyncio.Condition()

    @property
    def ready(self) -> bool:
        """Ready until it dies."""
        return not self.dead and self.inner.ready

    async def allow(self, outputs: int) -> None:
        """From now on release only ``outputs`` more outputs (over all requests)."""
        async with self._changed:
            self._budget = outputs
            self._changed.notify_all()

    async def die(self) -> None:
        """Die: not ready any more; held requests error out or hang (``errors_on_death``)."""
        async with self._changed:
            self.dead = True
            self._changed.notify_all()

    async def start(self) -> None:
        """Start the mock engine."""
        await self.inner.start()

    async def stop(self) -> None:
        """Stop the mock engine."""
        await self.inner.stop()

    async def generate(self, request: PreprocessedRequest) -> AsyncIterator[EngineOutput]:
        """The mock's outputs, each waiting for the gate; an error or a hang after death."""
        self.accepted += 1
        outputs = self.inner.generate(request)
        try:
            async for out in outputs:
                async with self._changed:
                    await self._changed.wait_for(
                        lambda: self.dead or self._budget is None or self._budget > 0
                    )
                    if not self.dead and self._budget is not None:
                        self._budget -= 1
                if self.dead:
                    if self.errors_on_death:
                        yield EngineOutput([], FINISH_ERROR, "the engine core process is gone")
                        return
                    await asyncio.Event().wait()  # until the worker ends the stream
                yield out
        finally:
            await outputs.aclose()  # type: ignore[attr-defined]

    async def abort(self, request_id: str) -> None:
        """Abort in the mock engine."""
        await self.inner.abort(request_id)

    def stats(self) -> EngineStats:
        """The mock engine's load."""
        return self.inner.stats()

    def limits(self) -> EngineLimits:
        """The mock engine's limits."""
        return self.inner.limits()


def _req(rid: str, max_tokens: int) -> PreprocessedRequest:
    return PreprocessedRequest(
        rid, MODEL, list(range(1, 30)), SamplingOptions(max_tokens=max_tokens, ignore_eos=True)
    )


async def _worker(engine: object, nats: NatsServer, model_dir: Path) -> Worker:
    card = ModelCard(MODEL, str(model_dir), 4096, 4)
    worker = Worker(engine, card, WorkerSettings(nats_url=nats.url))  # type: ignore[arg-type]
    await worker.start()
    return worker


@pytest.mark.parametrize("errors_on_death", [True, False], ids=["engine-errors", "engine-hangs"])
async def test_engine_death_errors_streams_in_progress_and_moves_unstarted_requests(
    nats_server: NatsServer,
    tiny_model_dir: Path,
    make_client: MakeClient,
    errors_on_death: bool,
) -> None:
    gated = GatedEngine(errors_on_death=errors_on_death)
    victim = await _worker(gated, nats_server, tiny_model_dir)
    workers = [victim]
    watch: asyncio.Task[None] | None = None
    try:
        client = await make_client(router_mode="round-robin")
        await client.wait_for_workers(10)
        # A stream in progress on the victim: its first output out, then the gate shuts.
        await gated.allow(1)
        stream = client.generate(_req("in-progress", 1000))
        first = await stream.__anext__()
        assert first.token_ids and first.finish_reason is None

        survivor = await _worker(
            MockEngine(MockEngineConfig(block_size=4, speedup_ratio=100.0, vocab_size=1000)),
            nats_server,
            tiny_model_dir,
        )
        workers.append(survivor)
        await client.wait_for_workers(10, count=2)
        # Requests that reach the victim now are accepted but produce nothing.
        unstarted = [
            asyncio.create_task(_collect(client, _req(f"unstarted-{i}", 8)))
            for i in range(UNSTARTED)
        ]
        assert survivor.server is not None and victim.server is not None
        served = survivor.server.counters
        await eventually(
            lambda: gated.accepted - 1 + served.requests_total == UNSTARTED,
            10,
            "every request accepted by one of the workers",
        )
        on_victim = gated.accepted - 1
        assert on_victim >= 1, "round-robin put none of the requests on the victim"

        watch = asyncio.create_task(victim.wait_engine_death())
        await gated.die()
        await asyncio.wait_for(watch, 10)

        # The stream in progress ends with an error naming the engine's death, not a hang.
        rest = [out async for out in stream]
        assert rest[-1].finish_reason == FINISH_ERROR
        assert rest[-1].error is not None and "engine died" in rest[-1].error
        # Every unstarted request ran (again) on the survivor and finished normally.
        for outs in await asyncio.gather(*unstarted):
            assert outs[-1].finish_reason == "length"
            assert sum(len(o.token_ids) for o in outs) == 8
        assert served.requests_total == UNSTARTED
        assert victim.server.counters.requests_refused == on_victim
        # And new requests are not taken by the victim any more.
        before = gated.accepted
        outs = await _collect(client, _req("after", 4))
        assert outs[-1].finish_reason == "length"
        assert gated.accepted == before
    finally:
        if watch is not None:
            watch.cancel()
        for worker in workers:
            await worker.shutdown(drain_timeout=0)


async def _collect(client: RoutedClient, req: PreprocessedRequest) -> list[EngineOutput]:
    return [out async for out in client.generate(req)]
