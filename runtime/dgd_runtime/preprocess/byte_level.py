"""The GPT-2 byte-level alphabet shared by byte-level BPE tokenizers (GPT-2, Llama 3, Qwen, ...).

Every byte maps to one printable character, so a token's text in the vocabulary is a string of
these characters: printable bytes map to themselves, the others to U+0100 onwards.
"""

from __future__ import annotations

from typing import Final


def _bytes_to_unicode() -> dict[int, str]:
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


BYTE_TO_CHAR: Final[dict[int, str]] = _bytes_to_unicode()
"""Byte value -> its character in the byte-level alphabet."""

CHAR_TO_BYTE: Final[dict[str, int]] = {c: b for b, c in BYTE_TO_CHAR.items()}
"""Character of the byte-level alphabet -> its byte value."""
