"""Read what the worker needs from a local HF-style model directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dgd_runtime.engines.base import ModelInfo


def read_model_dir(model_path: str) -> ModelInfo:
    """Read config.json (context length, vocab size, eos) and tokenizer.json (vocab) of a dir."""
    root = Path(model_path)
    config_file = root / "config.json"
    if not config_file.is_file():
        raise ValueError(
            f"--model-path {model_path}: no config.json (need a local HF-style model dir)"
        )
    config: dict[str, Any] = json.loads(config_file.read_text(encoding="utf-8"))
    context = int(
        config.get("max_position_embeddings")
        or config.get("max_sequence_length")
        or config.get("seq_length")
        or 4096
    )
    vocab = int(config.get("vocab_size") or 32000)
    eos_raw = config.get("eos_token_id")
    gen_file = root / "generation_config.json"
    if gen_file.is_file():
        gen = json.loads(gen_file.read_text(encoding="utf-8"))
        eos_raw = gen.get("eos_token_id", eos_raw)
    eos: tuple[int, ...]
    if isinstance(eos_raw, list):
        eos = tuple(int(x) for x in eos_raw)
    elif eos_raw is None:
        eos = ()
    else:
        eos = (int(eos_raw),)
    tok_file = root / "tokenizer.json"
    if tok_file.is_file():
        from tokenizers import Tokenizer

        base = int(Tokenizer.from_file(str(tok_file)).get_vocab_size(with_added_tokens=False))
        if base > 0:
            vocab = min(vocab, base)
    return ModelInfo(str(root), context, vocab, eos)
