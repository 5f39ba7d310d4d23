"""Exact and fast encoding of ASCII text for byte-level BPE tokenizers.

``tokenizers`` spends ~1.7 µs a token on a ~110-token chat prompt (Qwen2.5's tokenizer, on the
2-core machines here), most of it in its general pipeline (offsets, token strings, masks) rather
than in BPE merges. A burst of 64 such prompts is ~12 ms of the frontend's time, the largest
part of admitting them. For the pipeline of GPT-2, Llama 3, Qwen2 and their kind (a normalizer
that leaves ASCII alone, a regex split, the byte-level alphabet, BPE) and ASCII text, the same
ids come from:

1. splitting the text on the added tokens (longest first, as ``tokenizers`` matches them);
2. splitting each piece between them with the pre-tokenizer's regex, its ``\\p{L}`` and
   ``\\p{N}`` classes rewritten to their ASCII members for Python's ``re``;
3. looking each piece up in a cache, and on a miss running the tokenizer's own BPE model on the
   piece in the byte-level alphabet (``tokenizer.model.tokenize``), so the merges, the vocabulary
   and ``ignore_merges`` are the tokenizer's, not a copy.

That takes ~33 µs instead of ~189 µs for such a prompt. Only a tokenizer whose ``tokenizer.json``
has exactly a supported shape gets an encoder (:meth:`AsciiBpeEncoder.for_tokenizer` returns
None for anything else), and only ASCII text takes this path; everything else goes to
``tokenizers`` as before. ``tests/unit/test_ascii_bpe.py`` compares the two on random and real
text for each supported shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final

from tokenizers import Tokenizer

from dgd_runtime.preprocess.byte_level import BYTE_TO_CHAR

IDENTITY_ON_ASCII_NORMALIZERS: Final = frozenset({"NFC", "NFKC", "NFD", "NFKD"})
"""Unicode normalizations that leave ASCII text unchanged."""

GPT2_SPLIT_PATTERN: Final = (
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
)
"""The split ``tokenizers``' ByteLevel pre-tokenizer applies itself when ``use_regex`` is set."""

CACHE_MAX_ENTRIES: Final = 1 << 15
"""Pieces remembered (~6 MiB at most); the cache starts afresh when it is full."""
CACHEABLE_CHARS: Final = 64
"""Longer pieces (long runs of spaces or symbols) are encoded every time, not remembered."""

_ASCII_TRANSLATION: Final = {b: BYTE_TO_CHAR[b] for b in range(128)}
# What the Unicode classes of these patterns contain within ASCII.
_ASCII_CLASS_MEMBERS: Final = {"L": "A-Za-z", "N": "0-9"}
# Escapes whose meaning on ASCII input is the same in Oniguruma and in Python's re (ASCII mode).
_SAME_ESCAPES: Final = frozenset("sSdDwWrntfv")


def ascii_pattern(pattern: str) -> re.Pattern[str] | None:
    """A Python regex matching ASCII text exactly as the Oniguruma ``pattern`` does, or None.

    Rewrites ``\\p{L}`` and ``\\p{N}`` to their ASCII members and capturing groups to
    non-capturing ones; None for any construct whose translation is not known to be exact
    (other Unicode classes, anchors, look-behinds, possessive quantifiers, nested classes).
    """
    out: list[str] = []
    in_class = False
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                return None
            nxt = pattern[i + 1]
            if nxt == "p":
                match = re.match(r"\\p\{(\w+)\}", pattern[i:])
                members = _ASCII_CLASS_MEMBERS.get(match.group(1)) if match else None
                if match is None or members is None:
                    return None
                out.append(members if in_class else f"[{members}]")
                i += match.end()
                continue
            if nxt in _SAME_ESCAPES or not nxt.isalnum():
                out.append(pattern[i : i + 2])
                i += 2
                continue
            return None  # \x.., \u...., \b, \A, \z, \h, \R, back-references...
        if in_class:
            if c == "[" or pattern.startswith("&&", i):
                return None  # nested classes, POSIX brackets, intersections
            if c == "]":
                in_class = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            if pattern.startswith("[^", i):
                out.append("[^")
                i += 2
            else:
                out.append("[")
                i += 1
            if i < n and pattern[i] == "]":  # a literal "]" first in the class
                out.append("\\]")
                i += 1
            continue
        if c in "^$":
            return None  # anchors differ ($ before a final newline in Python)
        if c == "(":
            if pattern.startswith("(?<", i):
                return None  # look-behinds and named groups
            if not pattern.startswith("(?", i):
                out.append("(?:")
                i += 1
                continue
        if c in "?*+}" and i + 1 < n and pattern[i + 1] == "+":
            return None  # possessive quantifiers
        out.append(c)
        i += 1
    if in_class:
        return None
    try:
        compiled = re.compile("".join(out), re.ASCII)
    except re.error:
        return None
    # findall must return the matches themselves, not groups (e.g. Python's own (?P<name>...)).
    return compiled if compiled.groups == 0 else None


def identity_on_ascii(normalizer: Any) -> bool:
    """Whether a tokenizer.json ``normalizer`` (None for none) leaves ASCII text unchanged."""
    if normalizer is None:
        return True
    if not isinstance(normalizer, dict):
        return False
    if normalizer.get("type") == "Sequence":
        parts = normalizer.get("normalizers")
        return isinstance(parts, list) and all(identity_on_ascii(p) for p in parts)
    return normalizer.get("type") in IDENTITY_ON_ASCII_NORMALIZERS


def _split_pattern(pre_tokenizer: Any) -> str | None:
    """The regex the pre-tokenizer splits on (isolating the matches), or None if unsupported."""
    if not isinstance(pre_tokenizer, dict):
        return None
    kind = pre_tokenizer.get("type")
    if kind == "ByteLevel":
        if pre_tokenizer.get("add_prefix_space") or not pre_tokenizer.get("use_regex", True):
            return None
        return GPT2_SPLIT_PATTERN
    if kind != "Sequence":
        return None
    parts = pre_tokenizer.get("pretokenizers")
    if not isinstance(parts, list) or len(parts) != 2:
        return None
    split, byte_level = parts
    if not (isinstance(split, dict) and isinstance(byte_level, dict)):
        return None
    if byte_level.get("type") != "ByteLevel" or byte_level.get("add_prefix_space"):
        return None
    if byte_level.get("use_regex", True):
        return None
    if split.get("type") != "Split" or split.get("behavior") != "Isolated" or split.get("invert"):
        return None
    pattern = split.get("pattern")
    if not isinstance(pattern, dict):
        return None
    if isinstance(pattern.get("Regex"), str):
        return str(pattern["Regex"])
    if isinstance(pattern.get("String"), str) and pattern["String"]:
        return re.escape(str(pattern["String"]))
    return None


def _bpe_model_ok(model: Any) -> bool:
    return (
        isinstance(model, dict)
        and model.get("type") == "BPE"
        and not model.get("dropout")  # sampled merges: no two encodings need agree
        and not model.get("continuing_subword_prefix")
        and not model.get("end_of_word_suffix")
    )


def _added_tokens(tokens: Any) -> tuple[dict[str, int], dict[str, int]] | None:
    """Added tokens matched on the raw text and on the normalized text (text -> id each), or
    None if one of them matches in a way not reproduced here."""
    if not isinstance(tokens, list):
        return None
    raw: dict[str, int] = {}
    normalized: dict[str, int] = {}
    for tok in tokens:
        if not isinstance(tok, dict) or not isinstance(tok.get("content"), str):
            return None
        if tok.get("single_word") or tok.get("lstrip") or tok.get("rstrip"):
            return None
        if tok["content"]:
            (normalized if tok.get("normalized") else raw)[tok["content"]] = int(tok["id"])
    return raw, normalized


def _splitter(tokens: dict[str, int]) -> re.Pattern[str] | None:
    """Splits text on ``tokens`` (captured), the longest first where several match at a place."""
    ascii_tokens = sorted((t for t in tokens if t.isascii()), key=len, reverse=True)
    if not ascii_tokens:
        return None
    return re.compile("(" + "|".join(re.escape(t) for t in ascii_tokens) + ")")


def _template_ids(processor: Any) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Ids the post-processor puts before and after one sequence, or None if unsupported."""
    if processor is None:
        return (), ()
    if not isinstance(processor, dict):
        return None
    if processor.get("type") == "ByteLevel":
        return (), ()  # it only trims offsets
    if processor.get("type") == "Sequence":  # e.g. Llama 3.1: ByteLevel, then a template
        parts = [_template_ids(p) for p in processor.get("processors") or []]
        if any(p is None for p in parts):
            return None
        adding = [p for p in parts if p is not None and p != ((), ())]
        if len(adding) > 1:
            return None
        return adding[0] if adding else ((), ())
    if processor.get("type") != "TemplateProcessing":
        return None
    specials = processor.get("special_tokens") or {}
    before: list[int] = []
    after: list[int] = []
    seen_sequence = False
    for item in processor.get("single") or []:
        if not isinstance(item, dict):
            return None
        if "Sequence" in item:
            if seen_sequence or item["Sequence"].get("id") != "A":
                return None
            seen_sequence = True
            continue
        special = item.get("SpecialToken")
        if not isinstance(special, dict):
            return None
        entry = specials.get(special.get("id"))
        if not isinstance(entry, dict) or not isinstance(entry.get("ids"), list):
            return None
        (after if seen_sequence else before).extend(int(x) for x in entry["ids"])
    if not seen_sequence:
        return None
    return tuple(before), tuple(after)


class AsciiBpeEncoder:
    """Encodes ASCII text with the ids ``tokenizer.encode`` gives, several times faster.

    Build with :meth:`for_tokenizer`. :meth:`encode` returns None for text it does not take
    (non-ASCII), so callers fall back to the tokenizer.
    """

    __slots__ = (
        "_cache",
        "_model",
        "_normalized",
        "_normalized_split",
        "_prefix",
        "_raw",
        "_raw_split",
        "_split",
        "_suffix",
    )

    def __init__(
        self,
        tokenizer: Tokenizer,
        split: re.Pattern[str],
        added: tuple[dict[str, int], dict[str, int]],
        template: tuple[tuple[int, ...], tuple[int, ...]] | None,
    ) -> None:
        """Internal: use :meth:`for_tokenizer`, which checks the tokenizer's shape."""
        self._model = tokenizer.model
        self._split = split
        # tokenizers matches the added tokens that skip normalization first, on the raw text,
        # then the others in what is left (normalized; the same text here).
        self._raw, self._normalized = added
        self._raw_split = _splitter(self._raw)
        self._normalized_split = _splitter(self._normalized)
        self._prefix: tuple[int, ...] | None = None if template is None else template[0]
        self._suffix: tuple[int, ...] = () if template is None else template[1]
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def for_tokenizer(
        cls, tokenizer: Tokenizer, spec: dict[str, Any] | None = None
    ) -> AsciiBpeEncoder | None:
        """An encoder for ``tokenizer``, or None when its pipeline is not one reproduced here.

        ``spec`` is the tokenizer's JSON if the caller has read it already (it takes ~0.5 s for
        a 150k-token vocabulary).
        """
        if tokenizer.truncation is not None or tokenizer.padding is not None:
            return None
        if getattr(tokenizer, "encode_special_tokens", False):
            return None  # special tokens are then encoded as text, not matched
        if spec is None:
            spec = json.loads(tokenizer.to_str())
        if not identity_on_ascii(spec.get("normalizer")) or not _bpe_model_ok(spec.get("model")):
            return None
        pattern = _split_pattern(spec.get("pre_tokenizer"))
        split = ascii_pattern(pattern) if pattern is not None else None
        added = _added_tokens(spec.get("added_tokens"))
        if split is None or added is None:
            return None
        return cls(tokenizer, split, added, _template_ids(spec.get("post_processor")))

    def adds_specials_for(self, add_special_tokens: bool) -> bool:
        """Whether :meth:`encode` handles this ``add_special_tokens`` (it always handles False;
        True only for post-processors whose added tokens are reproduced here)."""
        return not add_special_tokens or self._prefix is not None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int] | None:
        """Token ids of ``text``, or None when it is not ASCII (or the post-processor's special
        tokens are of a kind not reproduced here)."""
        if not text.isascii():
            return None
        if add_special_tokens:
            if self._prefix is None:
                return None
            out = list(self._prefix)
        else:
            out = []
        _split_added(text, self._raw_split, self._raw, self._encode_normalized, out)
        if add_special_tokens:
            out.extend(self._suffix)
        return out

    def _encode_normalized(self, text: str, out: list[int]) -> None:
        _split_added(text, self._normalized_split, self._normalized, self._encode_text, out)

    def _encode_text(self, text: str, out: list[int]) -> None:
        pieces: list[str] = self._split.findall(text)
        if sum(map(len, pieces)) != len(text):
            # Text between two matches is a piece of its own (Isolated). None of the supported
            # patterns leaves any on ASCII text, but a tokenizer's own pattern might.
            pieces = _with_gaps(self._split, text)
        cache = self._cache
        get = cache.get
        for piece in pieces:
            ids = get(piece)
            if ids is None:
                ids = [t.id for t in self._model.tokenize(piece.translate(_ASCII_TRANSLATION))]
                if len(piece) <= CACHEABLE_CHARS:
                    if len(cache) >= CACHE_MAX_ENTRIES:
                        cache.clear()
                    cache[piece] = ids
            out += ids


def _split_added(
    text: str,
    splitter: re.Pattern[str] | None,
    tokens: dict[str, int],
    encode_between: Callable[[str, list[int]], None],
    out: list[int],
) -> None:
    """Append the ids of ``text``: its added ``tokens`` as such, the text between them through
    ``encode_between``."""
    if splitter is None:
        encode_between(text, out)
        return
    for k, part in enumerate(splitter.split(text)):
        if k & 1:
            out.append(tokens[part])
        elif part:
            encode_between(part, out)


def _with_gaps(split: re.Pattern[str], text: str) -> list[str]:
    pieces: list[str] = []
    pos = 0
    for m in split.finditer(text):
        start, end = m.span()
        if start > pos:
            pieces.append(text[pos:start])
        if end > start:
            pieces.append(text[start:end])
        pos = end
    if pos < len(text):
        pieces.append(text[pos:])
    return pieces
