"""Tokenizing prompts off the event loop.

``tokenizers``' ``Tokenizer.encode`` holds the GIL for its whole run, about 2 µs a token for a
byte-level BPE tokenizer such as Qwen's or Llama's, so while the frontend tokenizes a prompt
every stream it serves waits; a 4,300-token prompt stalls them all for ~11 ms. Its
``encode_batch`` releases the GIL. `EncodeBatcher` collects the prompts that arrive in one
event-loop iteration and sends them to one worker thread in one ``encode_batch`` call; a prompt
that turns out to be alone and is not long is tokenized in place, and so is a short one at once,
where the hop to the thread would cost the loop more than the encoding itself. (vLLM's OpenAI
server batches its tokenizer calls on one thread for the same reason.) ASCII prompts of up to
a few thousand characters that the tokenizer's fast encoder takes are encoded in place: at ~40
µs for a 110-token prompt, a burst of them costs the loop less than the wait for the one thread,
which tokenized a burst of 64 such prompts in ~7 batches one after another (~18 ms).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib

from tokenizers import Tokenizer

from dgd_runtime.preprocess.tokenizer import ModelPreprocessor

# Below this many characters a prompt is tokenized on the loop: ~45 tokens, ~110 µs of encoding,
# about what handing one prompt to the thread and back costs the loop (~85 µs, Qwen2.5's tokenizer;
# prompts sent together cost it ~20 µs each).
INLINE_CHARS = 256
# A batch takes prompts until it holds this many characters (~1 ms of encoding): its first
# prompt never waits long for the last, and a long prompt goes alone.
BATCH_CHARS = 4096
# A prompt that turns out to be alone in its loop iteration is tokenized in place below this
# many characters (~450 tokens, ~0.7 ms): when prompts do not pile up, the loop is not the
# bottleneck, and the thread would only add its hop.
ALONE_CHARS = 2048
# ASCII text that the tokenizer's fast encoder takes (dgd_runtime.preprocess.ascii_bpe) is
# encoded in place below this many characters: ~75 ns a character once its words are cached,
# ~150 ns before, so at most ~0.6-1.2 ms of the loop, where the thread's hop would cost a burst
# of prompts more than the encoding (one thread, batches in turn).
FAST_INLINE_CHARS = 8192


def _encode_batch(
    tokenizer: Tokenizer, texts: list[str], add_special_tokens: bool
) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens)]


class _Batch:
    __slots__ = ("chars", "futures", "texts", "tokenizer")

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.texts: list[str] = []
        self.futures: list[asyncio.Future[list[int]]] = []
        self.chars = 0


class EncodeBatcher:
    """Tokenizes a loop iteration's prompts on a worker thread in one call, unless there is
    one short prompt only.

    One per event loop (the frontend keeps one); `close` stops its thread.
    """

    def __init__(
        self,
        inline_chars: int = INLINE_CHARS,
        batch_chars: int = BATCH_CHARS,
        alone_chars: int = ALONE_CHARS,
        fast_inline_chars: int = FAST_INLINE_CHARS,
    ) -> None:
        self.inline_chars = inline_chars
        self.batch_chars = batch_chars
        self.alone_chars = alone_chars
        self.fast_inline_chars = fast_inline_chars
        self.batches_sent = 0
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: dict[tuple[int, bool], _Batch] = {}

    async def encode(
        self, prep: ModelPreprocessor, text: str, *, add_special_tokens: bool
    ) -> list[int]:
        """Token ids of ``text``, as ``prep.encode`` gives them."""
        if len(text) < self.inline_chars or (
            len(text) < self.fast_inline_chars
            and prep.encodes_fast(text, add_special_tokens=add_special_tokens)
        ):
            return prep.encode(text, add_special_tokens=add_special_tokens)
        tokenizer = prep.tokenizer_for(text)
        key = (id(tokenizer), add_special_tokens)
        loop = asyncio.get_running_loop()
        batch = self._pending.get(key)
        if batch is None:
            batch = self._pending[key] = _Batch(tokenizer)
            # Sent once the callbacks of this iteration have run: the prompts of the requests
            # read in it go in one call, up to the batch's size.
            loop.call_soon(self._send, key, batch)
        future: asyncio.Future[list[int]] = loop.create_future()
        batch.texts.append(text)
        batch.futures.append(future)
        batch.chars += len(text)
        if batch.chars >= self.batch_chars:
            self._send(key, batch)
        return await future

    def _send(self, key: tuple[int, bool], batch: _Batch) -> None:
        if self._pending.get(key) is not batch:
            return  # sent already, when it filled up
        del self._pending[key]
        if len(batch.texts) == 1 and batch.chars < self.alone_chars:
            _deliver_now(batch, key[1])
            return
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="tokenize"
            )
        loop = asyncio.get_running_loop()

        def done(work: concurrent.futures.Future[list[list[int]]]) -> None:
            # The loop may have closed while the batch ran: then nobody waits for it.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, work, batch.futures)

        self._executor.submit(
            _encode_batch, batch.tokenizer, batch.texts, key[1]
        ).add_done_callback(done)
        self.batches_sent += 1

    def close(self) -> None:
        """Stop the worker thread (a batch in flight still completes)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


def _deliver_now(batch: _Batch, add_special_tokens: bool) -> None:
    [future] = batch.futures
    if future.done():
        return
    try:
        ids = batch.tokenizer.encode(batch.texts[0], add_special_tokens=add_special_tokens).ids
    except Exception as exc:  # the Rust side raises plain Exception
        future.set_exception(exc)
    else:
        future.set_result(ids)


def _deliver(
    work: concurrent.futures.Future[list[list[int]]], futures: list[asyncio.Future[list[int]]]
) -> None:
    error = work.exception()
    results = None if error is not None else work.result()
    for i, future in enumerate(futures):
        if future.done():  # its request was cancelled (client gone)
            continue
        if results is None:
            assert error is not None
            future.set_exception(error)
        else:
            future.set_result(results[i])
