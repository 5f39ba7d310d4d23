"""Incremental detokenization: turn a stream of token ids into stable text deltas.

Two strategies, both emitting exactly the text `tokenizer.decode(all_ids)` would produce, split
into deltas that never contain a partial UTF-8 character:

* `ByteLevelDetokenizer` (fast path): for byte-level BPE tokenizers (GPT-2, Llama 3, Qwen, ...)
  every token id maps to a fixed byte string, so a delta is a table lookup fed through an
  incremental UTF-8 decoder that holds back incomplete multi-byte sequences. O(1) per token and
  no call into the tokenizer.
* `PrefixOffsetDetokenizer` (any tokenizer): decodes a short window `ids[prefix:]` and compares it
  with the decode of `ids[prefix:read]`; only text that is stable (does not end in U+FFFD, i.e. a
  multi-byte character split across tokens) is emitted. The window keeps merges and leading-space
  rules (SentencePiece/Metaspace) correct without re-decoding the whole sequence.
"""

from __future__ import annotations

import codecs
import functools
import json
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from tokenizers import Tokenizer

from dgd_runtime.preprocess.byte_level import CHAR_TO_BYTE

REPLACEMENT_CHAR = "\ufffd"
_UNSEEN: Final = b"\x00unseen"  # compared by identity: no encoded text is this object


class IncrementalDetokenizer(Protocol):
    """Feed token ids, receive the newly stable text."""

    def add(self, token_ids: Sequence[int]) -> str:
        """Append `token_ids`; return the text that became stable (may be empty)."""
        ...

    def flush(self) -> str:
        """End of stream: return whatever text is still held back."""
        ...


def _is_byte_level(decoder: Any) -> bool:
    if not isinstance(decoder, dict):
        return False
    if decoder.get("type") == "ByteLevel":
        return True
    if decoder.get("type") == "Sequence":
        parts = decoder.get("decoders") or []
        return len(parts) == 1 and _is_byte_level(parts[0])
    return False


def _piece_bytes(token: str) -> bytes:
    try:
        return bytes([CHAR_TO_BYTE[c] for c in token])
    except KeyError:  # an added token whose text is outside the byte alphabet
        return b"".join(
            bytes([CHAR_TO_BYTE[c]]) if c in CHAR_TO_BYTE else c.encode("utf-8") for c in token
        )


class ByteTable:
    """Byte string of every token id of a byte-level BPE tokenizer (special tokens -> b"")."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self._encoded: dict[Callable[[str], bytes], dict[int, bytes | None]] = {}

    def encoded_cache(self, encode: Callable[[str], bytes]) -> dict[int, bytes | None]:
        """Token id -> ``encode`` of its text, or None where the token is part of a character
        (see :meth:`ByteLevelDetokenizer.add_encoded`); one per encoder, filled as tokens are
        seen or all at once by :meth:`encode_all`."""
        cache = self._encoded.get(encode)
        if cache is None:
            cache = self._encoded[encode] = {}
        return cache

    def encode_all(self, encode: Callable[[str], bytes]) -> None:
        """Fill :meth:`encoded_cache` for every token now (~1 µs a token: call it off the
        event loop), so no stream pays for a token's first sight."""
        cache = self.encoded_cache(encode)
        for token_id, piece in enumerate(self.pieces):
            if token_id not in cache:
                cache[token_id] = encode_piece(piece, encode)

    @classmethod
    def build(cls, tokenizer: Tokenizer) -> ByteTable | None:
        """The table for `tokenizer`, or None when its decoder is not plain byte-level."""
        spec = json.loads(tokenizer.to_str())
        if not _is_byte_level(spec.get("decoder")):
            return None
        specials = {int(t["id"]) for t in spec.get("added_tokens", []) if t.get("special")}
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        size = max(vocab.values(), default=-1) + 1
        pieces = [b""] * size
        for token, tid in vocab.items():
            if tid not in specials:
                pieces[tid] = _piece_bytes(token)
        return cls(pieces)


def encode_piece(piece: bytes, encode: Callable[[str], bytes]) -> bytes | None:
    """``encode`` of a token's text; b"" for no text; None when its bytes are not whole
    UTF-8 characters (the incremental decoder's business)."""
    if not piece:
        return b""
    try:
        text = piece.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # A copy of exactly its length: orjson's result keeps its ~4 KiB buffer, which 151k cached
    # tokens would turn into ~600 MiB (tracemalloc shows it; sys.getsizeof does not).
    return memoryview(encode(text)).tobytes()


@functools.lru_cache(maxsize=16)
def _byte_table_cached(tokenizer_key: int, tokenizer: Tokenizer) -> ByteTable | None:
    del tokenizer_key  # part of the cache key only
    return ByteTable.build(tokenizer)


def byte_table_for(tokenizer: Tokenizer) -> ByteTable | None:
    """Cached `ByteTable.build` (the tokenizer object is itself cached per model directory)."""
    return _byte_table_cached(id(tokenizer), tokenizer)


class ByteLevelDetokenizer:
    """Fast incremental detokenizer for byte-level BPE (see module docstring).

    With an ``encode`` function (the frontend's JSON for one SSE line), :meth:`add_encoded`
    gives a token's text already encoded, from a cache shared by every stream of the
    tokenizer: most tokens are whole characters, and then the text a token adds is its own.
    """

    __slots__ = ("_decode", "_encode", "_encoded", "_held", "_pieces", "_size", "_state")

    def __init__(self, table: ByteTable, encode: Callable[[str], bytes] | None = None) -> None:
        self._pieces = table.pieces
        self._size = len(table.pieces)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._decode = decoder.decode
        self._state = decoder.getstate
        self._held = False  # bytes of an unfinished character are held back
        self._encode = encode
        self._encoded = table.encoded_cache(encode) if encode is not None else None

    def add(self, token_ids: Sequence[int]) -> str:
        """Append `token_ids`; return the newly complete text."""
        pieces, size = self._pieces, self._size
        if len(token_ids) == 1:
            tid = token_ids[0]
            text = self._decode(pieces[tid]) if 0 <= tid < size else ""
        else:
            text = self._decode(b"".join(pieces[t] for t in token_ids if 0 <= t < size))
        self._held = bool(self._state()[0])
        return text

    def add_encoded(self, token_id: int) -> bytes | None:
        """Append one token and return its text encoded (b"" when it adds none), or None
        without appending anything when that text is not simply the token's own (a character
        is unfinished, before or in it): then call :meth:`add`."""
        encoded = self._encoded
        if encoded is None or self._held:
            return None
        out = encoded.get(token_id, _UNSEEN)
        if out is _UNSEEN:  # the first time this token is seen (the cache has no None for it)
            out = encoded[token_id] = self._encode_whole(token_id)
        return out

    def _encode_whole(self, token_id: int) -> bytes | None:
        if not 0 <= token_id < self._size or self._encode is None:
            return None
        return encode_piece(self._pieces[token_id], self._encode)

    def flush(self) -> str:
        """Emit held-back bytes (an unfinished character becomes U+FFFD, like a full decode)."""
        self._held = False
        return self._decode(b"", True)


class PrefixOffsetDetokenizer:
    """Generic incremental detokenizer using a sliding decode window (see module docstring)."""

    __slots__ = ("_ids", "_prefix", "_read", "_skip", "_tokenizer")

    def __init__(
        self,
        tokenizer: Tokenizer,
        context_ids: Sequence[int] = (),
        skip_special_tokens: bool = True,
    ) -> None:
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        # A few prompt tokens of context so the first output token decodes as it would mid-text
        # (SentencePiece drops a leading space at the start of a decode).
        self._ids: list[int] = list(context_ids[-5:])
        self._prefix = 0
        self._read = len(self._ids)

    def _decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=self._skip))

    def add(self, token_ids: Sequence[int]) -> str:
        """Append `token_ids`; return the newly stable text."""
        self._ids.extend(token_ids)
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        full_text = self._decode(self._ids[self._prefix :])
        if len(full_text) > len(prefix_text) and not full_text.endswith(REPLACEMENT_CHAR):
            # Compare on the common prefix: a later token may legitimately rewrite nothing before.
            delta = full_text[len(prefix_text) :]
            self._prefix = self._read
            self._read = len(self._ids)
            return delta
        return ""

    def flush(self) -> str:
        """Emit whatever is still pending (possibly ending in U+FFFD)."""
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        full_text = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return full_text[len(prefix_text) :] if len(full_text) > len(prefix_text) else ""


def make_detokenizer(
    tokenizer: Tokenizer,
    prompt_ids: Sequence[int] = (),
    encode: Callable[[str], bytes] | None = None,
) -> IncrementalDetokenizer:
    """The fastest correct incremental detokenizer for `tokenizer` (``encode``: see
    :class:`ByteLevelDetokenizer`)."""
    table = byte_table_for(tokenizer)
    if table is not None:
        return ByteLevelDetokenizer(table, encode)
    return PrefixOffsetDetokenizer(tokenizer, prompt_ids)
