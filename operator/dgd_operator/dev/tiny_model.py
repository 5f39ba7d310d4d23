"""Build a tiny random-weight Llama model with its own tokenizer, offline and deterministically.

The real-engine tests need a model vLLM can load, and nothing may come from a model hub. So:
a byte-level BPE tokenizer (vocabulary 1024) trained on Python's own standard-library sources
(present on every machine), wrapped as a transformers fast tokenizer with a one-line chat
template, and a 2-layer Llama (hidden 256, 4 heads, 2 KV heads) with seeded random bf16
weights saved as safetensors: about 3.4 MB. Its output is gibberish but a pure function of the
prompt and sampling settings, which is what engine tests assert on.

Run it with a python that has torch, transformers and tokenizers (the vLLM venv):
``python tiny_model.py OUT_DIR``. ``vllm_env.py`` keys the cached copy by :data:`MODEL_VERSION`;
bump it whenever the output of this file changes.
"""

from __future__ import annotations

import json
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MODEL_VERSION = "v1"
CORPUS_FILES = 60
VOCAB_SIZE = 1024
SPECIAL_TOKENS = ("<|begin_of_text|>", "<|end_of_text|>", "<|pad|>")
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def corpus_files() -> list[Path]:
    """The first stdlib modules by name: the same text on every CPython 3.11."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(stdlib.glob("*.py"))[:CORPUS_FILES]


def _texts(files: list[Path]) -> Iterator[str]:
    for path in files:
        yield path.read_text(encoding="utf-8", errors="ignore")


def build_tokenizer() -> Any:
    """The tokenizer (a transformers ``PreTrainedTokenizerFast``), trained from the stdlib."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_texts(corpus_files()), trainer)
    bos, eos, pad = SPECIAL_TOKENS
    bpe.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, bpe.token_to_id(bos))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=bos, eos_token=eos, pad_token=pad
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def text_config(tokenizer: Any) -> Any:
    """The 2-layer Llama's ``LlamaConfig`` (also the language model of the tiny VLM)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="bfloat16",
    )


def build(out: Path) -> dict[str, object]:
    """Write the tokenizer and model into ``out``; return a summary."""
    import torch
    from transformers import LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(str(out))
    config = text_config(tokenizer)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(str(out), safe_serialization=True)
    summary: dict[str, object] = {
        "version": MODEL_VERSION,
        "vocab": len(tokenizer),
        "params": sum(p.numel() for p in model.parameters()),
        "corpus_files": len(corpus_files()),
    }
    # Written last: its presence marks a complete model directory.
    (out / "DGD-MODEL.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python tiny_model.py OUT_DIR")
    print(json.dumps(build(Path(sys.argv[1]))))
