"""The frontend tokenizes long prompts on a worker thread (`preprocess.offload.EncodeBatcher`):
same ids as in place, the prompts of one loop iteration in one call, the loop free meanwhile.
ASCII prompts that the tokenizer's fast encoder takes stay in place up to FAST_INLINE_CHARS;
the thread's tests turn that off (``fast_inline_chars=0``) to reach the thread with short
prompts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from dgd_runtime.local.model_dir import build_model_dir
from dgd_runtime.preprocess.offload import (
    ALONE_CHARS,
    FAST_INLINE_CHARS,
    INLINE_CHARS,
    EncodeBatcher,
)
from dgd_runtime.preprocess.tokenizer import ModelPreprocessor, load_preprocessor

pytestmark = pytest.mark.unit

SENTENCE = "the quick brown fox jumps over the lazy dog. "


@pytest.fixture(scope="module")
def prep(tmp_path_factory: pytest.TempPathFactory) -> ModelPreprocessor:
    model_dir: Path = build_model_dir(tmp_path_factory.mktemp("m") / "tiny", context_length=256)
    return load_preprocessor(str(model_dir))


@pytest.fixture
def batcher() -> Iterator[EncodeBatcher]:
    encoder = EncodeBatcher(fast_inline_chars=0)
    yield encoder
    encoder.close()


@pytest.fixture
def default_batcher() -> Iterator[EncodeBatcher]:
    encoder = EncodeBatcher()
    yield encoder
    encoder.close()


def long_prompt(i: int, chars: int = 2 * INLINE_CHARS) -> str:
    return (f"prompt {i}: " + SENTENCE * (chars // len(SENTENCE) + 1))[:chars]


@pytest.mark.parametrize(
    "text",
    [
        "hi",
        SENTENCE,
        long_prompt(1),
        "déjà vu, naïve café. " * 40,  # not ASCII: the full tokenizer
        long_prompt(2, 20_000),
    ],
)
@pytest.mark.parametrize("special", [False, True])
async def test_ids_are_the_tokenizers(
    prep: ModelPreprocessor, default_batcher: EncodeBatcher, text: str, special: bool
) -> None:
    ids = await default_batcher.encode(prep, text, add_special_tokens=special)
    assert ids == prep.encode(text, add_special_tokens=special)
    assert ids == prep.tokenizer.encode(text, add_special_tokens=special).ids
    # Alone in its loop iteration, a prompt goes to the thread only when it is long, and
    # ASCII text the fast encoder takes only when it is longer still.
    fast = text.isascii() and len(text) < FAST_INLINE_CHARS
    assert default_batcher.batches_sent == (1 if len(text) >= ALONE_CHARS and not fast else 0)


async def test_a_burst_of_ascii_prompts_is_encoded_in_place(
    prep: ModelPreprocessor, default_batcher: EncodeBatcher
) -> None:
    texts = [long_prompt(i, ALONE_CHARS) for i in range(8)]
    got = await asyncio.gather(
        *(default_batcher.encode(prep, t, add_special_tokens=False) for t in texts)
    )
    assert got == [prep.tokenizer.encode(t, add_special_tokens=False).ids for t in texts]
    assert default_batcher.batches_sent == 0
    # Not ASCII: the thread, as before.
    texts = ["déjà vu " + t for t in texts]
    got = await asyncio.gather(
        *(default_batcher.encode(prep, t, add_special_tokens=False) for t in texts)
    )
    assert got == [prep.tokenizer.encode(t, add_special_tokens=False).ids for t in texts]
    assert default_batcher.batches_sent >= 1


async def test_prompts_read_in_one_iteration_go_in_one_call(
    prep: ModelPreprocessor, batcher: EncodeBatcher
) -> None:
    texts = [long_prompt(i) for i in range(5)]
    got = await asyncio.gather(*(batcher.encode(prep, t, add_special_tokens=False) for t in texts))
    assert got == [prep.encode(t) for t in texts]
    assert batcher.batches_sent == 1


async def test_a_batch_is_sent_when_it_is_full(prep: ModelPreprocessor) -> None:
    encoder = EncodeBatcher(batch_chars=4 * 300, fast_inline_chars=0)
    try:
        texts = [long_prompt(i, 300) for i in range(9)]
        got = await asyncio.gather(
            *(encoder.encode(prep, t, add_special_tokens=False) for t in texts)
        )
        assert got == [prep.encode(t) for t in texts]
        assert encoder.batches_sent == 2  # 4 + 4 on the thread; the ninth, alone, in place
    finally:
        encoder.close()


async def test_the_loop_runs_while_a_long_prompt_is_tokenized(
    prep: ModelPreprocessor, batcher: EncodeBatcher
) -> None:
    # ~0.5 s of encoding: tokenized in place, the loop would not turn once meanwhile.
    text = SENTENCE * 20_000
    turns = 0
    encoding = True

    async def ticker() -> None:
        nonlocal turns
        while encoding:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    ids = await batcher.encode(prep, text, add_special_tokens=False)
    encoding = False
    await task
    assert len(ids) > 100_000
    assert turns >= 10


async def test_a_cancelled_request_leaves_the_others_of_its_batch(
    prep: ModelPreprocessor, batcher: EncodeBatcher
) -> None:
    texts = [long_prompt(i) for i in range(3)]
    tasks = [asyncio.create_task(batcher.encode(prep, t, add_special_tokens=False)) for t in texts]
    await asyncio.sleep(0)  # all three are in the batch
    tasks[1].cancel()
    assert await tasks[0] == prep.encode(texts[0])
    # Bounded: a delivery that stopped at the cancelled request would leave this one hanging.
    assert await asyncio.wait_for(tasks[2], 60) == prep.encode(texts[2])
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
    assert batcher.batches_sent == 1


async def test_it_works_again_after_close(prep: ModelPreprocessor, batcher: EncodeBatcher) -> None:
    text = long_prompt(7, ALONE_CHARS)
    assert await batcher.encode(prep, text, add_special_tokens=False) == prep.encode(text)
    batcher.close()
    assert await batcher.encode(prep, text, add_special_tokens=False) == prep.encode(text)
    assert batcher.batches_sent == 2
