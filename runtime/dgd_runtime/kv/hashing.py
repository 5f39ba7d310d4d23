"""Chained KV block hashes, shared by engines (KV events) and the KV router (lookups).

A block is ``block_size`` consecutive token ids; only full blocks are hashed. The hash of
block i covers its tokens and the hash of block i-1, so one hash identifies a whole prefix
(like Dynamo's sequence hashes). Hashes are 63-bit non-negative ints (JSON-safe everywhere).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from hashlib import blake2b

_MASK = (1 << 63) - 1
ROOT_HASH = 0
"""The parent of the first block (the empty prefix)."""


def hash_block(parent: int, tokens: Sequence[int]) -> int:
    """Chained hash of one full block of ``tokens`` following the prefix ``parent``."""
    h = blake2b(parent.to_bytes(8, "little"), digest_size=8)
    h.update(array("I", tokens).tobytes())
    return int.from_bytes(h.digest(), "little") & _MASK


def block_hashes(tokens: Sequence[int], block_size: int, parent: int = ROOT_HASH) -> list[int]:
    """Chained hashes of every full block of ``tokens``."""
    if block_size <= 0:
        raise ValueError("block_size must be positive")
    n_full = len(tokens) // block_size
    if n_full == 0:
        return []
    raw = memoryview(array("I", tokens[: n_full * block_size]).tobytes())
    step = block_size * 4
    out: list[int] = []
    for i in range(n_full):
        h = blake2b(parent.to_bytes(8, "little"), digest_size=8)
        h.update(raw[i * step : (i + 1) * step])
        parent = int.from_bytes(h.digest(), "little") & _MASK
        out.append(parent)
    return out


def media_root(media_hashes: Sequence[int | None]) -> int:
    """The parent hash of the first block of a prompt that carries media.

    A multimodal prompt's placeholder tokens are the same for every image of a given size, so
    the token ids alone cannot tell two images apart: the media hashes (in prompt order) are
    folded into the chain's root, and every block of the prompt then differs from the blocks
    of the same text with other media (or none). Same text and same media give the same
    chain, so repeated requests still hit the prefix cache.
    """
    h = blake2b(b"dgd-media", digest_size=8)
    for m in media_hashes:
        h.update((m or 0).to_bytes(8, "little"))
    return int.from_bytes(h.digest(), "little") & _MASK
