"""Resolving a request's media references before the engine sees them.

Media and embeddings reach a worker as ``dgd-obj://`` references to the NATS object store
(:mod:`dgd_runtime.transport.media_store`); the worker fetches them and hands the engine
:class:`~dgd_runtime.protocol.MediaRef` s whose ``payload`` holds the bytes, so engines never
talk to NATS. A text request passes straight through.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace

from dgd_runtime.engines.base import Engine, EngineLimits, EngineStats
from dgd_runtime.protocol import FINISH_ERROR, EngineOutput, MediaRef, PreprocessedRequest
from dgd_runtime.transport.media_store import MediaStore, MediaStoreError, is_store_url


class MediaResolvingEngine:
    """An :class:`~dgd_runtime.engines.base.Engine` that resolves media, then delegates."""

    def __init__(self, engine: Engine, store: MediaStore) -> None:
        """Wrap ``engine``; ``store`` is the worker's media side channel."""
        self.engine = engine
        self.store = store
        self.media_fetched = 0

    @property
    def ready(self) -> bool:
        """The wrapped engine's readiness."""
        return self.engine.ready

    async def start(self) -> None:
        """Start the wrapped engine."""
        await self.engine.start()

    async def stop(self) -> None:
        """Stop the wrapped engine."""
        await self.engine.stop()

    async def abort(self, request_id: str) -> None:
        """Abort in the wrapped engine."""
        await self.engine.abort(request_id)

    def stats(self) -> EngineStats:
        """The wrapped engine's load."""
        return self.engine.stats()

    def limits(self) -> EngineLimits:
        """The wrapped engine's limits."""
        return self.engine.limits()

    def generate(self, request: PreprocessedRequest) -> AsyncIterator[EngineOutput]:
        """Fetch referenced media into ``payload`` s, then stream the engine's outputs.

        A request without media references gets the engine's own stream, unwrapped: text
        requests pay nothing per token for this layer.
        """
        mm = request.mm
        if not mm or not any(is_store_url(m.url) for m in mm):
            return self.engine.generate(request)
        return self._resolved(request, mm)

    async def _resolved(
        self, request: PreprocessedRequest, mm: list[MediaRef]
    ) -> AsyncGenerator[EngineOutput, None]:
        resolved: list[MediaRef] = []
        for i, ref in enumerate(mm):
            if not is_store_url(ref.url):
                resolved.append(ref)
                continue
            try:
                data = await self.store.get(ref.url)
            except MediaStoreError as exc:
                yield EngineOutput([], FINISH_ERROR, f"media item {i} ({ref.kind}): {exc}")
                return
            self.media_fetched += 1
            resolved.append(replace(ref, payload=data))
        request = replace(request, mm=resolved)
        agen = self.engine.generate(request)
        try:
            async for out in agen:
                yield out
        finally:
            await agen.aclose()  # type: ignore[attr-defined]
