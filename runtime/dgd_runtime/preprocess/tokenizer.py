"""Tokenizer and chat template loaded from a local HF-style model directory, cached per path."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from dgd_runtime.preprocess.ascii_bpe import AsciiBpeEncoder, identity_on_ascii
from dgd_runtime.preprocess.chat_template import DEFAULT_CHAT_TEMPLATE, ChatTemplate


class ModelDirError(ValueError):
    """The model directory is missing a file the frontend needs, or a file is unreadable."""


def _token_text(value: Any) -> str | None:
    # tokenizer_config.json stores special tokens either as strings or AddedToken dicts.
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelDirError(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class ModelPreprocessor:
    """Everything needed to turn a request into token ids and tokens back into text."""

    model_dir: Path
    tokenizer: Tokenizer
    chat_template: ChatTemplate
    eos_token_ids: tuple[int, ...]
    bos_token: str | None
    context_length: int | None
    # The same tokenizer minus a Unicode-normalization step that is the identity on ASCII
    # (NFC/NFKC/NFD/NFKD); used for ASCII text, it saves about a quarter of the encode time.
    ascii_tokenizer: Tokenizer | None = None
    # Byte-level BPE tokenizers of a known shape encode ASCII text ~5x faster through this
    # (same ids; dgd_runtime.preprocess.ascii_bpe).
    ascii_encoder: AsciiBpeEncoder | None = None

    def tokenizer_for(self, text: str) -> Tokenizer:
        """The tokenizer that encodes `text` fastest with the same result."""
        tok = self.ascii_tokenizer
        if tok is None or not text.isascii():
            tok = self.tokenizer
        return tok

    def encodes_fast(self, text: str, *, add_special_tokens: bool = False) -> bool:
        """True when :meth:`encode` takes the fast ASCII path for `text` (in Python, on the
        calling thread: see EncodeBatcher)."""
        enc = self.ascii_encoder
        return enc is not None and text.isascii() and enc.adds_specials_for(add_special_tokens)

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`; chat prompts already carry their special tokens in the text."""
        enc = self.ascii_encoder
        if enc is not None:
            fast = enc.encode(text, add_special_tokens)
            if fast is not None:
                return fast
        ids: list[int] = (
            self.tokenizer_for(text).encode(text, add_special_tokens=add_special_tokens).ids
        )
        return ids

    def decode(self, token_ids: list[int]) -> str:
        """Plain (non-incremental) decode, skipping special tokens."""
        return str(self.tokenizer.decode(token_ids, skip_special_tokens=True))


def _eos_ids(
    tokenizer: Tokenizer, tok_cfg: dict[str, Any], gen_cfg: dict[str, Any], cfg: dict[str, Any]
) -> tuple[int, ...]:
    ids: list[int] = []
    eos_text = _token_text(tok_cfg.get("eos_token"))
    if eos_text is not None:
        tid = tokenizer.token_to_id(eos_text)
        if tid is not None:
            ids.append(int(tid))
    for source in (gen_cfg.get("eos_token_id"), cfg.get("eos_token_id")):
        values = source if isinstance(source, list) else [source]
        ids.extend(int(v) for v in values if isinstance(v, int) and v not in ids)
    return tuple(dict.fromkeys(ids))


def _ascii_variant(tokenizer: Tokenizer, spec: dict[str, Any]) -> Tokenizer | None:
    """`tokenizer` (`spec` is its JSON) without its normalizer when that normalizer cannot
    change ASCII text."""
    norm = spec.get("normalizer")
    if norm is None or not identity_on_ascii(norm):
        return None  # no normalizer to drop, or one that changes ASCII text
    return Tokenizer.from_str(json.dumps({**spec, "normalizer": None}))


@functools.lru_cache(maxsize=16)
def load_preprocessor(model_dir: str) -> ModelPreprocessor:
    """Load (once per directory) the tokenizer, chat template and EOS ids of `model_dir`."""
    root = Path(model_dir)
    tok_path = root / "tokenizer.json"
    if not tok_path.is_file():
        raise ModelDirError(f"{tok_path} not found")
    try:
        tokenizer = Tokenizer.from_file(str(tok_path))
    except Exception as exc:  # the Rust side raises plain Exception
        raise ModelDirError(f"cannot load {tok_path}: {exc}") from exc
    tok_cfg = _read_json(root / "tokenizer_config.json")
    gen_cfg = _read_json(root / "generation_config.json")
    cfg = _read_json(root / "config.json")
    source = tok_cfg.get("chat_template")
    if isinstance(source, list):  # named templates: [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
        source = named.get("default") or next(iter(named.values()), None)
    if not isinstance(source, str):
        jinja_file = root / "chat_template.jinja"
        source = jinja_file.read_text(encoding="utf-8") if jinja_file.is_file() else None
    bos = _token_text(tok_cfg.get("bos_token"))
    template = ChatTemplate(
        source if isinstance(source, str) else DEFAULT_CHAT_TEMPLATE,
        bos_token=bos,
        eos_token=_token_text(tok_cfg.get("eos_token")),
    )
    ctx = cfg.get("max_position_embeddings")
    spec = json.loads(tokenizer.to_str())  # read once for both ASCII variants
    ascii_encoder = AsciiBpeEncoder.for_tokenizer(tokenizer, spec)
    # The normalizer-less copy costs ~110 MiB for a 151k-token vocabulary; with the fast encoder
    # it would only serve ASCII prompts too long to encode in place (on the thread, ~25% faster).
    ascii_tokenizer = _ascii_variant(tokenizer, spec) if ascii_encoder is None else None
    return ModelPreprocessor(
        model_dir=root,
        tokenizer=tokenizer,
        chat_template=template,
        eos_token_ids=_eos_ids(tokenizer, tok_cfg, gen_cfg, cfg),
        bos_token=bos,
        context_length=int(ctx) if isinstance(ctx, int) else None,
        ascii_tokenizer=ascii_tokenizer,
        ascii_encoder=ascii_encoder,
    )
