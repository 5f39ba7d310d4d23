"""A disaggregated request is served within one worker generation (runtime namespace): during a
managed rolling update the frontend watches `<prefix>-*` and must never hand a prefill of one
generation to a decode worker of another."""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Callable
from typing import Any, cast

import pytest

from dgd_runtime.protocol import (
    EngineOutput,
    ModelCard,
    PreprocessedRequest,
    SamplingOptions,
    WorkerInstance,
)
from dgd_runtime.router.client import RoutedClient
from dgd_runtime.router.disagg import StagedClient
from dgd_runtime.transport.client import TokenSink

pytestmark = pytest.mark.unit

MODEL = "m"


def _instance(namespace: str, component: str, worker_type: str = "") -> WorkerInstance:
    card = ModelCard(
        MODEL, "/m", 1024, 16, extra={"worker_type": worker_type, "transfer_tag": namespace}
    )
    iid = f"{namespace}/{component}"
    return WorkerInstance(iid, namespace, component, "generate", f"s.{iid}", card)


class FakeStage:
    """The parts of a `RoutedClient` the staged client uses, over fixed instances."""

    def __init__(self, instances: list[WorkerInstance]) -> None:
        self._instances = instances
        self.nc = object()
        self.routed: list[WorkerInstance] = []

    def instances(self) -> list[WorkerInstance]:
        return list(self._instances)

    def serves(self, model: str) -> bool:
        return any(i.model.name == model for i in self._instances)

    def namespaces(self, model: str) -> set[str]:
        return {i.namespace for i in self._instances if i.model.name == model}

    def on_instances_changed(self, callback: Callable[[], None]) -> None:
        return None

    async def generate(
        self,
        request: PreprocessedRequest,
        on_route: Callable[[WorkerInstance], None] | None = None,
        *,
        namespace: str | None = None,
        sink: TokenSink | None = None,
    ) -> AsyncGenerator[EngineOutput, None]:
        chosen = [i for i in self._instances if namespace is None or i.namespace == namespace]
        inst = chosen[0]
        self.routed.append(inst)
        if on_route is not None:
            on_route(inst)
        disagg: dict[str, Any] = {"tag": request.disagg["tag"]} if request.disagg else {}
        yield EngineOutput(token_ids=[1], finish_reason="length", disagg=disagg or None)


def _request(i: int) -> PreprocessedRequest:
    return PreprocessedRequest(
        request_id=f"r{i}", model=MODEL, token_ids=[1, 2, 3], sampling=SamplingOptions(max_tokens=2)
    )


async def _serve(client: StagedClient, count: int) -> None:
    for i in range(count):
        async for _ in client.generate(_request(i)):
            pass


async def test_prefill_and_decode_always_come_from_one_generation() -> None:
    old, new = "ns-g-aaaa1111", "ns-g-bbbb2222"
    prefill = FakeStage([_instance(old, "prefill"), _instance(new, "prefill")])
    decode = FakeStage([_instance(new, "backend", "decode"), _instance(old, "backend", "decode")])
    client = StagedClient(
        cast(RoutedClient, decode), cast(RoutedClient, prefill), rng=random.Random(7)
    )
    await _serve(client, 20)
    assert len(prefill.routed) == len(decode.routed) == 20
    pairs = {(p.namespace, d.namespace) for p, d in zip(prefill.routed, decode.routed, strict=True)}
    assert pairs == {(old, old), (new, new)}  # both generations used, never mixed


async def test_without_a_complete_generation_the_decode_worker_prefills_itself() -> None:
    # Mid-roll: the old generation kept its decode worker, the new one has only its prefill.
    prefill = FakeStage([_instance("ns-g-new", "prefill")])
    decode = FakeStage([_instance("ns-g-old", "backend", "decode")])
    client = StagedClient(cast(RoutedClient, decode), cast(RoutedClient, prefill))
    await _serve(client, 3)
    assert prefill.routed == []
    assert client.counts == {"disaggregated": 0, "local_prefill": 3}
