"""Build a tiny offline HF-style model directory (no weights): config, tokenizer, chat template.

The tokenizer is a byte-level BPE trained with the ``tokenizers`` library on a few hundred
generated pseudo-words, so it encodes any text, round-trips exactly, and is small enough to
load in milliseconds. Usage: ``python -m dgd_runtime.local.model_dir OUT_DIR``.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_SYLLABLES = (
    "ka", "lo", "mi", "ne", "ru", "ta", "vo", "si", "de", "pa", "zu", "fi", "gro", "bel",
    "tor", "an", "en", "is", "om", "ul", "che", "sha", "qua", "ix",
)  # fmt: skip


def generated_words(count: int, seed: int = 7) -> list[str]:
    """``count`` deterministic pseudo-words made of 1-4 syllables."""
    rng = random.Random(seed)
    return ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(count)]


def _training_corpus(words: list[str], seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    english = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "the",
        "lazy",
        "dog",
        "hello",
        "world",
        "you",
        "are",
        "a",
        "helpful",
        "assistant",
        "what",
        "is",
        "the",
        "answer",
        "please",
        "tell",
        "me",
        "a",
        "story",
        "about",
        "tokens",
        "and",
        "prompts",
        "user",
        "system",
    ]
    vocab = words + english
    lines = []
    for _ in range(600):
        n = rng.randint(4, 16)
        line = " ".join(rng.choice(vocab) for _ in range(n))
        if rng.random() < 0.3:
            line = line.capitalize() + rng.choice([".", "?", "!", ",", ":"])
        lines.append(line)
    lines.extend(str(i) for i in range(100))
    return lines


def build_model_dir(
    out_dir: str | Path,
    *,
    name: str = "dgd-tiny",
    vocab_size: int = 1000,
    context_length: int = 4096,
    num_words: int = 400,
) -> Path:
    """Write config.json, tokenizer.json, tokenizer_config.json, generation_config.json.

    Returns the directory. Special tokens ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``
    come after the learned vocabulary; ``<|im_end|>`` is the EOS token (ChatML template).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    tok.train_from_iterator(_training_corpus(generated_words(num_words)), trainer=trainer)
    base_vocab = tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS])
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    tok.save(str(out / "tokenizer.json"))

    tokenizer_config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": context_length,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHATML_TEMPLATE,
        "added_tokens_decoder": {
            str(ids[t]): {
                "content": t,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for t in SPECIAL_TOKENS
        },
    }
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "_name_or_path": name,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "max_position_embeddings": context_length,
        "vocab_size": base_vocab + len(SPECIAL_TOKENS),
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "torch_dtype": "bfloat16",
        "tie_word_embeddings": True,
    }
    generation_config = {
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
        "pad_token_id": ids["<|endoftext|>"],
    }
    for fname, doc in (
        ("tokenizer_config.json", tokenizer_config),
        ("config.json", config),
        ("generation_config.json", generation_config),
    ):
        (out / fname).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m dgd_runtime.local.model_dir OUT_DIR [NAME]``."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m dgd_runtime.local.model_dir OUT_DIR [NAME]", file=sys.stderr)
        return 2
    path = build_model_dir(args[0], name=args[1] if len(args) > 1 else "dgd-tiny")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
