"""Incremental detokenization matches a full decode, token by token, for tricky text."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import orjson
import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from dgd_runtime.local.model_dir import build_model_dir
from dgd_runtime.preprocess.detokenize import (
    ByteLevelDetokenizer,
    ByteTable,
    PrefixOffsetDetokenizer,
    byte_table_for,
    make_detokenizer,
)
from dgd_runtime.preprocess.tokenizer import load_preprocessor

pytestmark = pytest.mark.unit

SAMPLES = [
    "Hello world, the quick brown fox.",
    "naïve café — ∑x² ≠ y³",
    "你好\uff0c世界\uff01 日本語のテキスト",
    "emoji 🤖🎉👩‍👩‍👧 and flags 🇫🇷",
    "  leading spaces\n\ttabs\r\nnewlines  ",
]


@pytest.fixture(scope="module")
def byte_level(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    model_dir = build_model_dir(tmp_path_factory.mktemp("m") / "tiny")
    return load_preprocessor(str(model_dir)).tokenizer


@pytest.fixture(scope="module")
def metaspace() -> Tokenizer:
    # A SentencePiece-style tokenizer (Metaspace): not byte-level, takes the generic path.
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    corpus = [s * 3 for s in SAMPLES] + ["hello there world"] * 10
    alphabet = sorted({c for s in SAMPLES for c in s} | {"▁"})
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=["<unk>"], initial_alphabet=alphabet, show_progress=False
        ),
    )
    return tok


def _stream(detok: ByteLevelDetokenizer | PrefixOffsetDetokenizer, ids: list[int]) -> list[str]:
    deltas = [detok.add([t]) for t in ids]
    deltas.append(detok.flush())
    return deltas


@pytest.mark.parametrize("text", SAMPLES)
def test_byte_level_fast_path_matches_full_decode(byte_level: Tokenizer, text: str) -> None:
    table = byte_table_for(byte_level)
    assert table is not None
    ids = byte_level.encode(text).ids
    deltas = _stream(ByteLevelDetokenizer(table), ids)
    assert "".join(deltas) == byte_level.decode(ids) == text
    # No delta ever carries a half character.
    assert all("\ufffd" not in d for d in deltas)


@pytest.mark.parametrize("text", SAMPLES)
def test_generic_path_matches_full_decode(
    byte_level: Tokenizer, metaspace: Tokenizer, text: str
) -> None:
    for tok in (byte_level, metaspace):
        ids = tok.encode(text).ids
        deltas = _stream(PrefixOffsetDetokenizer(tok), ids)
        assert "".join(deltas) == tok.decode(ids)
        assert all("\ufffd" not in d for d in deltas)


def test_multibyte_character_split_over_tokens_is_held_back(byte_level: Tokenizer) -> None:
    table = byte_table_for(byte_level)
    assert table is not None
    ids = byte_level.encode("🤖").ids
    assert len(ids) > 1, "the tiny vocabulary splits the emoji into byte tokens"
    detok = ByteLevelDetokenizer(table)
    assert [detok.add([t]) for t in ids][:-1] == [""] * (len(ids) - 1)


def test_random_ids_match_full_decode(byte_level: Tokenizer) -> None:
    rng = random.Random(5)
    table = byte_table_for(byte_level)
    assert table is not None
    vocab = byte_level.get_vocab_size()
    for _ in range(200):
        ids = [rng.randrange(vocab) for _ in range(rng.randrange(1, 30))]
        want = byte_level.decode(ids)
        assert "".join(_stream(ByteLevelDetokenizer(table), ids)) == want
        assert "".join(_stream(PrefixOffsetDetokenizer(byte_level), ids)) == want


def test_special_tokens_are_skipped(byte_level: Tokenizer) -> None:
    ids = byte_level.encode("hi<|im_end|>there").ids
    assert "".join(_stream(make_detokenizer(byte_level), ids)) == "hithere"  # type: ignore[arg-type]


def test_chunks_of_several_tokens(byte_level: Tokenizer) -> None:
    ids = byte_level.encode(SAMPLES[3]).ids
    detok = make_detokenizer(byte_level)
    text = "".join(detok.add(ids[i : i + 3]) for i in range(0, len(ids), 3)) + detok.flush()
    assert text == SAMPLES[3]


def test_metaspace_uses_generic_path(metaspace: Tokenizer, tmp_path: Path) -> None:
    assert byte_table_for(metaspace) is None
    assert isinstance(make_detokenizer(metaspace), PrefixOffsetDetokenizer)


def _encoded_stream(detok: ByteLevelDetokenizer, ids: list[int]) -> tuple[str, int]:
    """Text of ``ids`` fed as the frontend does: encoded when possible, else through add.

    Also returns how many tokens took the encoded path.
    """
    text, encoded_count = "", 0
    for t in ids:
        encoded = detok.add_encoded(t)
        if encoded is None:
            text += detok.add([t])
        else:
            encoded_count += 1
            text += orjson.loads(encoded) if encoded else ""
    return text + detok.flush(), encoded_count


def test_encoded_tokens_give_the_full_decode(byte_level: Tokenizer) -> None:
    rng = random.Random(9)
    table = byte_table_for(byte_level)
    assert table is not None
    vocab = byte_level.get_vocab_size()
    calls: list[str] = []

    def encode(text: str) -> bytes:
        calls.append(text)
        return orjson.dumps(text)

    encoded_total = 0
    for text in SAMPLES:
        ids = byte_level.encode(text).ids
        got, count = _encoded_stream(ByteLevelDetokenizer(table, encode), ids)
        assert got == byte_level.decode(ids) == text
        encoded_total += count
    for _ in range(300):
        # Random ids split characters anywhere: those tokens must go through the decoder.
        ids = [rng.randrange(vocab) for _ in range(rng.randrange(1, 30))]
        got, count = _encoded_stream(ByteLevelDetokenizer(table, encode), ids)
        assert got == byte_level.decode(ids)
        encoded_total += count
    assert encoded_total > 1000
    # Each token's text is encoded once (the cache is shared by every stream of the tokenizer).
    assert len(calls) == len(set(calls))


def test_without_an_encoder_nothing_is_encoded(byte_level: Tokenizer) -> None:
    table = byte_table_for(byte_level)
    assert table is not None
    detok = ByteLevelDetokenizer(table)
    assert detok.add_encoded(byte_level.encode("hello").ids[0]) is None


def test_every_token_encoded_up_front_costs_its_length_in_memory(byte_level: Tokenizer) -> None:
    table = byte_table_for(byte_level)
    assert table is not None

    def encode(text: str) -> bytes:
        return orjson.dumps(text)  # orjson keeps a ~4 KiB buffer behind each result

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        table.encode_all(encode)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    cache = table.encoded_cache(encode)
    assert len(cache) == len(table.pieces)
    assert grown / len(cache) < 300  # bytes a token: the text's copy, not orjson's buffer
    # The same as encoding them one by one as they come.
    lazy = ByteLevelDetokenizer(ByteTable(table.pieces), encode)
    assert all(lazy.add_encoded(t) == cache[t] for t in range(len(cache)) if cache[t] is not None)
