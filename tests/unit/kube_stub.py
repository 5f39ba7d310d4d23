"""A stand-in API server for tests of the operator's HTTP client: aiohttp routes on 127.0.0.1."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from dgd_operator.controllerkit.kube import Credentials, KubeClient

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def stub_api_client(
    path: str, handler: Handler, **client_options: int
) -> AsyncIterator[KubeClient]:
    """A `KubeClient` talking to a server that answers GET `path` with `handler`; both are
    closed on exit."""
    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        client = KubeClient(
            Credentials(server=f"http://127.0.0.1:{port}"), field_manager="test", **client_options
        )
        try:
            yield client
        finally:
            await client.close()
    finally:
        await runner.cleanup()
