"""A mock vision/audio tower: deterministic embeddings sized like a real encoder's output.

One row of ``hidden_size`` float16 values per placeholder token of the item (the count the
frontend reserved in the prompt, :func:`~dgd_runtime.preprocess.multimodal.placeholder_count`),
derived from the media bytes with SHAKE-256, so equal media give equal embeddings and
different media different ones.
"""

from __future__ import annotations

from hashlib import shake_256
from typing import Final

from dgd_runtime.preprocess.multimodal import placeholder_count

DEFAULT_HIDDEN_SIZE: Final = 2048
"""Hidden size of the language model the embeddings feed (Qwen2-VL-2B's is 1536, 7B's 3584)."""
BYTES_PER_VALUE: Final = 2  # float16


def mock_embeddings(
    kind: str, data: bytes, *, hidden_size: int = DEFAULT_HIDDEN_SIZE, what: str = "media"
) -> tuple[bytes, tuple[int, int]]:
    """``(embeddings, (rows, hidden_size))`` of one media item (raises if undecodable)."""
    rows = placeholder_count(kind, data, what)
    size = rows * hidden_size * BYTES_PER_VALUE
    h = shake_256(kind.encode() + b"\0")
    h.update(data)
    return h.digest(size), (rows, hidden_size)
