"""An in-process stand-in for the router client, for unit tests of the frontend.

It serves one or more model cards and streams a scripted token sequence, one token per
output, optionally failing part-way (worker lost) or having no workers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from dgd_runtime.protocol import (
    EngineOutput,
    ModelCard,
    NoWorkersError,
    PreprocessedRequest,
    WorkerLostError,
)


class FakeBackend:
    """Streams `reply_ids` (cycled up to max_tokens) for every request."""

    def __init__(
        self,
        cards: Sequence[ModelCard],
        reply_ids: Sequence[int],
        *,
        fail_after: int | None = None,
        delay: float = 0.0,
        finish_on_eos: bool = True,
        tokens_per_output: int = 1,
    ) -> None:
        self.cards = list(cards)
        self.reply_ids = list(reply_ids)
        self.fail_after = fail_after
        self.delay = delay
        self.finish_on_eos = finish_on_eos
        self.tokens_per_output = tokens_per_output
        self.requests: list[PreprocessedRequest] = []
        self.closed: list[str] = []  # request ids whose stream was closed (cancel or end)

    def models(self) -> Sequence[ModelCard]:
        """The served model cards (empty list = no workers)."""
        return list(self.cards)

    def generate(self, request: PreprocessedRequest) -> AsyncIterator[EngineOutput]:
        """Stream the scripted reply."""
        self.requests.append(request)
        return self._stream(request)

    async def _stream(self, request: PreprocessedRequest) -> AsyncIterator[EngineOutput]:
        try:
            if not self.cards:
                raise NoWorkersError("no workers")
            limit = request.sampling.max_tokens or len(self.reply_ids)
            pending: list[int] = []
            for i in range(limit):
                if self.fail_after is not None and i >= self.fail_after:
                    raise WorkerLostError("worker went away")
                tid = self.reply_ids[i % len(self.reply_ids)] if self.reply_ids else 0
                pending.append(tid)
                last = i == limit - 1
                eos = (
                    not request.sampling.ignore_eos
                    and self.finish_on_eos
                    and tid in request.eos_token_ids
                )
                if len(pending) < self.tokens_per_output and not (last or eos):
                    continue
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield EngineOutput(
                    pending,
                    "stop" if eos else ("length" if last else None),
                    None,
                    0 if i < self.tokens_per_output else None,
                )
                pending = []
                if eos:
                    return
        finally:
            self.closed.append(request.request_id)
