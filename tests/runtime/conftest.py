"""Fixtures for runtime tests: a real nats-server, a tiny offline model directory, workers.

Shared with the frontend tests: ``nats_server`` (``.url``, ``.restart()``), ``tiny_model_dir``,
``start_worker`` (in-process mock worker), ``worker_processes`` (subprocess workers),
``make_client`` (:class:`RoutedClient`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.runtime.support import WorkerProcess

from dgd_runtime.engines.mock import MockEngine, MockEngineConfig
from dgd_runtime.local.model_dir import build_model_dir
from dgd_runtime.local.nats_server import NatsServer, NatsServerUnavailableError
from dgd_runtime.protocol import ModelCard
from dgd_runtime.router.client import RoutedClient
from dgd_runtime.worker.service import Worker, WorkerSettings


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh nats-server on a free 127.0.0.1 port with JetStream (store under tmp_path).

    Interface: ``.url``, ``.port``, ``.pid``, ``.restart(down_for=0.0)``, ``.stop()``, ``.start()``.
    Stopped by PID at teardown.
    """
    try:
        server = NatsServer(store_dir=str(tmp_path / "nats"))
    except NatsServerUnavailableError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    os.makedirs(server.store_dir, exist_ok=True)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny offline HF-style model directory (config.json, tokenizer.json, chat template)."""
    return build_model_dir(tmp_path_factory.mktemp("model") / "dgd-tiny", name="dgd-tiny")


@pytest.fixture
async def start_worker(
    nats_server: NatsServer, tiny_model_dir: Path
) -> AsyncIterator[Callable[..., Awaitable[Worker]]]:
    """Factory for in-process workers (mock engine) on the test's event loop; shut down after."""
    started: list[Worker] = []

    async def start(
        *,
        namespace: str = "dynamo",
        model_name: str = "dgd-tiny",
        speedup_ratio: float = 100.0,
        block_size: int = 4,
        **engine_options: Any,
    ) -> Worker:
        engine = MockEngine(
            MockEngineConfig(
                block_size=block_size,
                speedup_ratio=speedup_ratio,
                vocab_size=1000,
                context_length=4096,
                **engine_options,
            )
        )
        card = ModelCard(model_name, str(tiny_model_dir), 4096, block_size)
        worker = Worker(engine, card, WorkerSettings(nats_url=nats_server.url, namespace=namespace))
        await worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        await worker.shutdown(drain_timeout=0)


@pytest.fixture
def worker_processes(
    nats_server: NatsServer, tiny_model_dir: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory for ``python -m dgd_runtime.worker`` subprocesses; killed by PID after the test."""
    procs: list[WorkerProcess] = []

    def start(**kwargs: Any) -> WorkerProcess:
        kwargs.setdefault("model_name", "dgd-tiny")
        proc = WorkerProcess(nats_server.url, str(tiny_model_dir), **kwargs)
        procs.append(proc)
        return proc.start()

    yield start
    for proc in procs:
        proc.kill()


@pytest.fixture
async def make_client(
    nats_server: NatsServer,
) -> AsyncIterator[Callable[..., Awaitable[RoutedClient]]]:
    """Factory for :class:`RoutedClient` s connected to the test's nats-server; closed after."""
    clients: list[RoutedClient] = []

    async def make(**kwargs: Any) -> RoutedClient:
        kwargs.setdefault("namespace", "dynamo")
        client = await RoutedClient.connect(nats_server.url, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
