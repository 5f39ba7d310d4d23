"""Mock engine: KV block accounting, prefix caching, token counts, abort, back-pressure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dgd_runtime.engines.base import Engine
from dgd_runtime.engines.mock import MockEngine, MockEngineConfig, MockTiming
from dgd_runtime.engines.mock.kv_cache import KvCacheManager
from dgd_runtime.kv.hashing import block_hashes
from dgd_runtime.protocol import (
    EngineOutput,
    KvEvent,
    PreprocessedRequest,
    SamplingOptions,
)

pytestmark = pytest.mark.unit

FAST = 1_000_000.0  # speedup: simulated time ~0


def _req(
    rid: str,
    tokens: list[int],
    max_tokens: int | None = 8,
    *,
    ignore_eos: bool = True,
    eos: list[int] | None = None,
    min_tokens: int = 0,
    seed: int | None = None,
) -> PreprocessedRequest:
    return PreprocessedRequest(
        rid,
        "m",
        tokens,
        SamplingOptions(
            max_tokens=max_tokens, ignore_eos=ignore_eos, min_tokens=min_tokens, seed=seed
        ),
        eos or [],
    )


async def _collect(engine: MockEngine, req: PreprocessedRequest) -> list[EngineOutput]:
    return [out async for out in engine.generate(req)]


def _tokens(outs: list[EngineOutput]) -> list[int]:
    return [t for o in outs for t in o.token_ids]


@pytest.fixture
async def engine() -> AsyncIterator[MockEngine]:
    eng = MockEngine(
        MockEngineConfig(block_size=4, num_gpu_blocks=64, speedup_ratio=FAST, vocab_size=50)
    )
    await eng.start()
    yield eng
    await eng.stop()


# --------------------------------------------------------------------------- KvCacheManager


def test_kv_allocate_and_free_returns_every_block() -> None:
    kv = KvCacheManager(16, 4)
    tokens = list(range(10))  # 2 full blocks + tail
    seq, matched = kv.allocate_prompt(tokens, kv.prompt_hashes(tokens))
    assert matched == 0
    assert kv.active_blocks == 3
    assert [e.kind for e in kv.take_events()] == ["stored"]
    kv.free(seq)
    assert kv.active_blocks == 0
    assert kv.cached_blocks == 2  # full blocks stay cached for reuse
    assert kv.free_blocks == 14
    assert kv.available_blocks() == 16


def test_kv_prefix_reuse_shares_blocks() -> None:
    kv = KvCacheManager(16, 4)
    a = list(range(12))
    b = [*list(range(8)), 99, 98, 97, 96, 95]
    seq_a, _ = kv.allocate_prompt(a, kv.prompt_hashes(a))
    seq_b, matched = kv.allocate_prompt(b, kv.prompt_hashes(b))
    assert matched == 2
    assert kv.active_blocks == 3 + 2  # b adds its own third block and tail
    kv.free(seq_a)
    kv.free(seq_b)
    assert kv.active_blocks == 0


def test_kv_eviction_emits_removed_lru_first() -> None:
    kv = KvCacheManager(4, 2)
    first = [1, 2, 3, 4]
    seq, _ = kv.allocate_prompt(first, kv.prompt_hashes(first))
    kv.free(seq)
    kv.take_events()
    second = [7, 8, 9, 10, 11, 12]
    seq2, _ = kv.allocate_prompt(second, kv.prompt_hashes(second))
    events = kv.take_events()
    removed = [h for e in events if e.kind == "removed" for h in e.block_hashes]
    # 3 new blocks needed, 2 free: the leaf of the old prefix goes first.
    assert removed == [block_hashes(first, 2)[1]]
    assert kv.active_blocks == 3
    kv.free(seq2)


def test_kv_decode_fills_block_and_registers_it() -> None:
    kv = KvCacheManager(8, 4)
    tokens = [5, 6, 7]
    seq, _ = kv.allocate_prompt(tokens, kv.prompt_hashes(tokens))
    assert kv.take_events() == []
    tokens.append(8)
    kv.append_token(seq, tokens)
    events = kv.take_events()
    assert events == [KvEvent("stored", block_hashes(tokens, 4), None)]
    assert kv.active_blocks == 1
    tokens.append(9)
    kv.append_token(seq, tokens)  # starts a new tail block
    assert kv.active_blocks == 2
    kv.free(seq)
    assert kv.active_blocks == 0


def test_kv_without_prefix_caching_never_shares() -> None:
    kv = KvCacheManager(16, 4, enable_prefix_caching=False)
    tokens = list(range(8))
    s1, m1 = kv.allocate_prompt(tokens, kv.prompt_hashes(tokens))
    s2, m2 = kv.allocate_prompt(tokens, kv.prompt_hashes(tokens))
    assert (m1, m2) == (0, 0)
    assert kv.active_blocks == 4
    assert kv.take_events() == []
    kv.free(s1)
    kv.free(s2)
    assert kv.used_blocks == 0


# --------------------------------------------------------------------------- MockEngine


def test_mock_engine_satisfies_engine_protocol() -> None:
    assert isinstance(MockEngine(), Engine)


async def test_exact_max_tokens_with_ignore_eos(engine: MockEngine) -> None:
    outs = await _collect(engine, _req("a", list(range(10)), 37, eos=list(range(50))))
    assert len(_tokens(outs)) == 37
    assert outs[-1].finish_reason == "length"
    assert all(0 <= t < 50 for t in _tokens(outs))
    assert outs[0].cached_tokens == 0
    assert all(o.cached_tokens is None for o in outs[1:])


async def test_tokens_are_deterministic(engine: MockEngine) -> None:
    a = _tokens(await _collect(engine, _req("same", [1, 2, 3], 20)))
    b = _tokens(await _collect(engine, _req("same", [1, 2, 3], 20)))
    c = _tokens(await _collect(engine, _req("other", [1, 2, 3], 20, seed=5)))
    d = _tokens(await _collect(engine, _req("x", [1, 2, 3], 20, seed=5)))
    assert a == b
    assert c == d
    assert a != c


async def test_eos_stops_unless_ignored(engine: MockEngine) -> None:
    every_token_is_eos = list(range(50))
    outs = await _collect(engine, _req("e", [1, 2], 10, ignore_eos=False, eos=every_token_is_eos))
    assert len(_tokens(outs)) == 1
    assert outs[-1].finish_reason == "stop"
    outs = await _collect(
        engine, _req("m", [1, 2], 10, ignore_eos=False, eos=every_token_is_eos, min_tokens=3)
    )
    assert len(_tokens(outs)) == 3


async def test_prefix_cache_hit_reported_and_blocks_released(engine: MockEngine) -> None:
    prompt = list(range(1, 14))  # 3 full blocks of 4 + 1
    first = await _collect(engine, _req("p1", prompt, 4))
    assert first[0].cached_tokens == 0
    second = await _collect(engine, _req("p2", prompt, 4))
    assert second[0].cached_tokens == 12
    assert engine.kv.active_blocks == 0
    assert engine.stats().num_running == 0


async def test_prompt_too_long_is_an_error(engine: MockEngine) -> None:
    eng = MockEngine(
        MockEngineConfig(block_size=4, num_gpu_blocks=4, speedup_ratio=FAST, context_length=64)
    )
    await eng.start()
    try:
        outs = await _collect(eng, _req("big", list(range(40)), 4))
        assert outs[-1].finish_reason == "error"
        assert "KV blocks" in (outs[-1].error or "")
        outs = await _collect(eng, _req("ctx", list(range(64)), 4))
        assert outs[-1].finish_reason == "error"
        assert "context length" in (outs[-1].error or "")
    finally:
        await eng.stop()


async def test_abort_frees_blocks(engine: MockEngine) -> None:
    slow = MockEngine(
        MockEngineConfig(block_size=4, num_gpu_blocks=64, speedup_ratio=1.0, vocab_size=50)
    )
    await slow.start()
    try:
        gen = slow.generate(_req("long", list(range(10)), 10_000))
        first = await gen.__anext__()
        assert first.finish_reason is None
        assert slow.kv.active_blocks > 0
        await slow.abort("long")
        rest = [o async for o in gen]
        assert rest[-1].finish_reason == "cancelled"
        assert slow.kv.active_blocks == 0
    finally:
        await slow.stop()


async def test_closing_the_stream_aborts(engine: MockEngine) -> None:
    slow = MockEngine(
        MockEngineConfig(block_size=4, num_gpu_blocks=64, speedup_ratio=1.0, vocab_size=50)
    )
    await slow.start()
    try:
        gen = slow.generate(_req("c", list(range(10)), 10_000))
        await gen.__anext__()
        await gen.aclose()
        assert slow.kv.active_blocks == 0
        assert slow.stats().num_running == 0
    finally:
        await slow.stop()


async def test_unread_output_pauses_the_sequence() -> None:
    eng = MockEngine(
        MockEngineConfig(
            block_size=4, num_gpu_blocks=256, speedup_ratio=FAST, max_pending_tokens=16
        )
    )
    await eng.start()
    try:
        gen = eng.generate(_req("bp", [1, 2, 3], 500))
        await gen.__anext__()
        for _ in range(50):
            await asyncio.sleep(0)
        # Nobody reads: the engine stops at the pending limit instead of generating 500 tokens.
        assert eng.stats().generated_tokens_total <= 16 + 1
        got = 0
        async for out in gen:
            got += len(out.token_ids)
        assert eng.stats().generated_tokens_total == 500
    finally:
        await eng.stop()


async def test_batch_respects_max_num_seqs() -> None:
    eng = MockEngine(
        MockEngineConfig(block_size=4, num_gpu_blocks=256, speedup_ratio=FAST, max_num_seqs=2)
    )
    await eng.start()
    try:
        seen: list[int] = []

        async def run(i: int) -> None:
            async for _ in eng.generate(_req(f"s{i}", [i, i + 1, i + 2], 6)):
                seen.append(eng.stats().num_running)

        await asyncio.gather(*(run(i) for i in range(6)))
        assert max(seen) <= 2
        assert eng.kv.active_blocks == 0
    finally:
        await eng.stop()


async def test_preemption_when_cache_is_full() -> None:
    # 6 blocks of 2 tokens; two sequences that each grow to 5 blocks cannot both fit.
    eng = MockEngine(
        MockEngineConfig(
            block_size=2, num_gpu_blocks=6, speedup_ratio=FAST, enable_prefix_caching=False
        )
    )
    await eng.start()
    try:
        a, b = await asyncio.gather(
            _collect(eng, _req("a", [1, 2, 3], 6)), _collect(eng, _req("b", [4, 5, 6], 6))
        )
        assert len(_tokens(a)) == 6
        assert len(_tokens(b)) == 6
        assert eng.stats().num_preemptions >= 1
        assert eng.kv.used_blocks == 0
    finally:
        await eng.stop()


async def test_kv_events_reach_the_sink(engine: MockEngine) -> None:
    got: list[KvEvent] = []
    engine.set_kv_event_sink(got.extend)
    prompt = list(range(8))
    await _collect(engine, _req("k", prompt, 1))
    stored = [h for e in got if e.kind == "stored" for h in e.block_hashes]
    assert stored[:2] == block_hashes(prompt, 4)
    assert set(engine.kv_snapshot()) >= set(stored[:2])


def test_timing_matches_reference_shape() -> None:
    t = MockTiming()
    assert t.step_ms(1, 0) == pytest.approx(5.75, abs=0.05)
    assert t.step_ms(64, 0) == pytest.approx(6.8, abs=0.05)
    assert t.step_ms(0, 113, 113**2) == pytest.approx(20.0, abs=0.5)
    assert t.step_ms(0, 64 * 113, 64 * 113**2) == pytest.approx(155.0, abs=5)
    one_long = t.step_ms(0, 8000, 8000**2) - t.prefill_base_ms
    two_halves = t.step_ms(0, 8000, 2 * 4000**2) - t.prefill_base_ms
    assert one_long > two_halves  # attention cost grows faster than linearly per sequence
    assert t.step_ms(0, 0) == 0.0
