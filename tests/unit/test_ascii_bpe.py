"""The ASCII fast encoder gives exactly the ids ``tokenizers`` gives, for every supported shape.

Each tokenizer below is trained here (byte-level BPE, a few hundred merges) in one of the shapes
real models ship: GPT-2's ByteLevel split, Qwen2's (NFC, its own split, ``ignore_merges``), Llama
3's (digits in threes, a BOS template), and Llama 3.1's post-processor sequence. Random ASCII
text weighted toward what the split patterns treat specially, this repository's own files and
chat prompts are encoded both ways and must agree.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from pathlib import Path

import pytest
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from dgd_runtime.local.model_dir import build_model_dir, generated_words
from dgd_runtime.preprocess.ascii_bpe import (
    CACHEABLE_CHARS,
    GPT2_SPLIT_PATTERN,
    AsciiBpeEncoder,
    ascii_pattern,
)
from dgd_runtime.preprocess.tokenizer import load_preprocessor

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_PATTERN = QWEN2_PATTERN.replace(r"|\p{N}|", r"|\p{N}{1,3}|")
SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>")


def _corpus() -> list[str]:
    rng = random.Random(5)
    words = [*generated_words(300), "don't", "I'LL", "it's", "we've", "you're", "1234567"]
    lines = []
    for _ in range(800):
        line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 14)))
        lines.append(line + rng.choice(["", ".", "?!", ":\n", "  ", "\t", "\r\n"]))
    return lines


def _train(
    pre_tokenizer: pre_tokenizers.PreTokenizer,
    *,
    normalizer: normalizers.Normalizer | None = None,
    ignore_merges: bool = False,
    post_processor: Callable[[Tokenizer], processors.PostProcessor] | None = None,
    extra_added: tuple[AddedToken, ...] = (),
) -> Tokenizer:
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=900,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIALS])
    if extra_added:
        tok.add_tokens(list(extra_added))
    if post_processor is not None:
        tok.post_processor = post_processor(tok)
    return tok


def _bos_template(tok: Tokenizer) -> processors.PostProcessor:
    bos = "<|begin_of_text|>"
    return processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )


def _bos_eos_sequence(tok: Tokenizer) -> processors.PostProcessor:
    bos, eos = "<|begin_of_text|>", "<|end_of_text|>"
    template = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        special_tokens=[(bos, tok.token_to_id(bos)), (eos, tok.token_to_id(eos))],
    )
    return processors.Sequence([processors.ByteLevel(trim_offsets=False), template])


def _split_then_bytes(pattern: str) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


SHAPES: dict[str, Callable[[], Tokenizer]] = {
    "gpt2": lambda: _train(pre_tokenizers.ByteLevel(add_prefix_space=False)),
    "qwen2": lambda: _train(
        _split_then_bytes(QWEN2_PATTERN),
        normalizer=normalizers.NFC(),
        ignore_merges=True,
        post_processor=lambda _: processors.ByteLevel(trim_offsets=False),
        # Matched after the raw-text specials: "INST" (raw) wins inside "[INST]" (normalized).
        extra_added=(
            AddedToken("[INST]", normalized=True, special=False),
            AddedToken("INST", normalized=False, special=False),
            AddedToken("<tool_call>", normalized=True, special=False),
            # Where two match at one place the longer wins.
            AddedToken("<tool_call>s", normalized=True, special=False),
        ),
    ),
    # A literal split leaves the text between matches as pieces of their own.
    "literal split": lambda: _train(
        pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(" ", behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    ),
    "llama3": lambda: _train(
        _split_then_bytes(LLAMA3_PATTERN), ignore_merges=True, post_processor=_bos_template
    ),
    "llama3.1": lambda: _train(
        _split_then_bytes(LLAMA3_PATTERN),
        normalizer=normalizers.Sequence([normalizers.NFC(), normalizers.NFKC()]),
        post_processor=_bos_eos_sequence,
    ),
}


@pytest.fixture(scope="module", params=sorted(SHAPES))
def tokenizer(request: pytest.FixtureRequest) -> Tokenizer:
    return SHAPES[request.param]()


def _random_texts(count: int, seed: int) -> list[str]:
    """ASCII text weighted toward what the split patterns treat specially."""
    rng = random.Random(seed)
    atoms = (
        list(string.ascii_letters)
        + list(string.digits) * 2
        + [" ", " ", "  ", "   ", "\n", "\n\n", "\r\n", "\r", "\t", "\x0b", "\x0c"]
        + ["\x1c", "\x1f", "\x00", "\x7f", "\x1b"]
        + ["'s", "'S", "'t", "'re", "'VE", "'m", "'ll", "'LL", "'d", "'x", "''"]
        + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
        + [" the", " The", "ing", " 2024", "12345678", "...", "!!!", " ->", "\n  "]
        + list(SPECIALS)
        + ["[INST]", "INST", "<tool_call>", "<tool_call>s", "<|im_", "|>", "<|", "<|im_start|>INST"]
    )
    texts = ["".join(chr(c) for c in range(128)), "", " ", "\n", "a", "'s", "1", "  \n  x"]
    for _ in range(count):
        texts.append("".join(rng.choice(atoms) for _ in range(rng.randint(1, 40))))
    return texts


def _repo_texts() -> list[str]:
    """Chunks of this repository's own source and documentation (ASCII ones)."""
    texts: list[str] = []
    for path in [*sorted(REPO.glob("runtime/dgd_runtime/**/*.py"))[:40], REPO / "README.md"]:
        content = path.read_text(encoding="utf-8")
        texts.extend(content[i : i + 1500] for i in range(0, min(len(content), 30000), 1500))
    return [t for t in texts if t.isascii()]


def _assert_same(tok: Tokenizer, enc: AsciiBpeEncoder, texts: list[str]) -> None:
    for add_special in (False, True):
        for text in texts:
            want = tok.encode(text, add_special_tokens=add_special).ids
            assert enc.encode(text, add_special) == want, (text, add_special)


def test_random_ascii_text_encodes_as_tokenizers_does(tokenizer: Tokenizer) -> None:
    enc = AsciiBpeEncoder.for_tokenizer(tokenizer)
    assert enc is not None
    _assert_same(tokenizer, enc, _random_texts(1500, seed=1))


def test_real_text_encodes_as_tokenizers_does(tokenizer: Tokenizer) -> None:
    enc = AsciiBpeEncoder.for_tokenizer(tokenizer)
    assert enc is not None
    texts = _repo_texts()
    assert len(texts) > 50
    _assert_same(tokenizer, enc, texts)
    # Second pass: now from the cache.
    _assert_same(tokenizer, enc, texts[:20])


def test_long_pieces_are_encoded_without_being_remembered(tokenizer: Tokenizer) -> None:
    enc = AsciiBpeEncoder.for_tokenizer(tokenizer)
    assert enc is not None
    long_run = " " * (CACHEABLE_CHARS + 10) + "x" + "-" * (CACHEABLE_CHARS * 3)
    _assert_same(tokenizer, enc, [long_run, long_run])


def test_non_ascii_text_is_left_to_the_tokenizer(tokenizer: Tokenizer) -> None:
    enc = AsciiBpeEncoder.for_tokenizer(tokenizer)
    assert enc is not None
    assert enc.encode("café") is None
    assert enc.encode("ascii then \u00a0 nbsp", add_special_tokens=True) is None


def test_the_model_directory_tokenizer_gets_an_encoder(tmp_path: Path) -> None:
    prep = load_preprocessor(str(build_model_dir(tmp_path / "tiny")))
    assert prep.ascii_encoder is not None
    prompt = prep.chat_template.render(
        [{"role": "user", "content": "What's 12345 + 678?\n  Tell me!"}],
        add_generation_prompt=True,
    )
    assert prep.encode(prompt) == prep.tokenizer.encode(prompt, add_special_tokens=False).ids
    assert prep.encodes_fast(prompt)
    assert not prep.encodes_fast("naïve")
    assert prep.encode("naïve") == prep.tokenizer.encode("naïve", add_special_tokens=False).ids


UNSUPPORTED: dict[str, Callable[[], Tokenizer]] = {
    "lowercasing normalizer": lambda: _train(
        pre_tokenizers.ByteLevel(add_prefix_space=False), normalizer=normalizers.Lowercase()
    ),
    "prefix space": lambda: _train(pre_tokenizers.ByteLevel(add_prefix_space=True)),
    "metaspace": lambda: _train(pre_tokenizers.Metaspace()),
    "digits then bytes": lambda: _train(
        pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel()]
        )
    ),
    "uppercase class": lambda: _train(_split_then_bytes(r"\p{Lu}+|[^\p{Lu}]+")),
    "merged split": lambda: _train(
        pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(r"\s+"), behavior="merged_with_next"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    ),
    "stripping added token": lambda: _train(
        pre_tokenizers.ByteLevel(add_prefix_space=False),
        extra_added=(AddedToken("<mask>", lstrip=True),),
    ),
}


@pytest.mark.parametrize("shape", sorted(UNSUPPORTED))
def test_other_pipelines_get_no_encoder(shape: str) -> None:
    assert AsciiBpeEncoder.for_tokenizer(UNSUPPORTED[shape]()) is None


def test_truncation_or_padding_get_no_encoder() -> None:
    tok = SHAPES["gpt2"]()
    tok.enable_truncation(16)
    assert AsciiBpeEncoder.for_tokenizer(tok) is None
    tok.no_truncation()
    tok.enable_padding(length=16)
    assert AsciiBpeEncoder.for_tokenizer(tok) is None


def test_dropout_gets_no_encoder() -> None:
    tok = Tokenizer(models.BPE(dropout=0.1))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert AsciiBpeEncoder.for_tokenizer(tok) is None


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (
            GPT2_SPLIT_PATTERN,
            r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+"
            r"|\s+(?!\S)|\s+",
        ),
        (r"[^\r\n\p{L}\p{N}]?\p{L}+", r"[^\r\nA-Za-z0-9]?[A-Za-z]+"),
        (r"(\p{N}{1,3})|x", r"(?:[0-9]{1,3})|x"),
        (r"(?i:'s|'t)", r"(?i:'s|'t)"),
        (r"[]a]|\.", r"[\]a]|\."),
        (r"\w+\d", r"\w+\d"),
    ],
)
def test_ascii_pattern_rewrites_unicode_classes(pattern: str, expected: str) -> None:
    compiled = ascii_pattern(pattern)
    assert compiled is not None
    assert compiled.pattern == expected


@pytest.mark.parametrize(
    "pattern",
    [
        r"\p{Lu}+",
        r"\P{L}",
        r"^\s+",
        r"\s+$",
        r"(?<=a)b",
        r"(?<name>a)",
        r"a++",
        r"[[:alpha:]]",
        r"[a-z&&[^aeiou]]",
        r"\x41",
        r"\bword",
        r"(a)\1",
        r"[abc",
        r"(?P<name>a)",
        "trailing\\",
    ],
)
def test_ascii_pattern_refuses_what_it_cannot_translate_exactly(pattern: str) -> None:
    assert ascii_pattern(pattern) is None


def test_the_cache_starts_afresh_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    import dgd_runtime.preprocess.ascii_bpe as ascii_bpe

    monkeypatch.setattr(ascii_bpe, "CACHE_MAX_ENTRIES", 8)
    tok = SHAPES["qwen2"]()
    enc = AsciiBpeEncoder.for_tokenizer(tok)
    assert enc is not None
    texts = [" ".join(generated_words(30, seed=s)) for s in range(5)]
    _assert_same(tok, enc, texts)
    assert 0 < len(enc._cache) <= 8
