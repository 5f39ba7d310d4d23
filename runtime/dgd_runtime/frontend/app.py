"""Start and stop the frontend HTTP server around a backend."""

from __future__ import annotations

from dataclasses import dataclass

from dgd_runtime.frontend.http import HttpLimits, HttpServer
from dgd_runtime.frontend.service import Backend, Frontend


@dataclass
class RunningFrontend:
    """A listening frontend."""

    server: HttpServer
    frontend: Frontend
    host: str
    port: int

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:8000."""
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        """Stop listening and close open connections."""
        await self.server.close()
        if self.frontend.media_loader is not None:
            await self.frontend.media_loader.close()
        self.frontend.encoder.close()


async def start_frontend(
    backend: Backend,
    host: str = "127.0.0.1",
    port: int = 0,
    limits: HttpLimits | None = None,
) -> RunningFrontend:
    """Listen on host:port (0 = any free port) and serve the OpenAI API over `backend`."""
    frontend = Frontend(backend)
    server = HttpServer(frontend, limits)
    actual = await server.start(host, port)
    return RunningFrontend(server, frontend, host, actual)
