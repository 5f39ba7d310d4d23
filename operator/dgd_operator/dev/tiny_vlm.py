"""Build a tiny random-weight vision-language model (LLaVA layout), offline and deterministically.

The multimodal engine tests need a model vLLM serves with images, and nothing may come from a
model hub. So: the tiny text model's tokenizer (:mod:`tiny_model`) plus an ``<image>`` special
token, a CLIP vision tower of 2 layers (hidden 64, 32x32 pixel input, 8x8 patches: 16 patch
features, the CLS feature dropped as LLaVA-1.5 does), LLaVA's two-layer projector, and the
tiny Llama as language model; seeded random bf16 weights saved as safetensors, with the
``LlavaProcessor`` (CLIP image processor + tokenizer) saved beside them, about 4 MB in all.

vLLM expands each ``<image>`` token of a prompt into :data:`IMAGE_TOKENS` placeholder tokens
filled with the projected patch features, so the output depends on the pixels even though the
weights are random: two different images give different greedy continuations.

Run it with a python that has torch and transformers (the vLLM venv), the repository's
``operator/`` directory on ``PYTHONPATH``: ``python -m dgd_operator.dev.tiny_vlm OUT_DIR``. ``vllm_env.py`` keys the cached copy by a digest of this file and ``tiny_model.py``,
so any change to either builds a new model directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Final

from dgd_operator.dev import tiny_model

IMAGE_TOKEN: Final = "<image>"
IMAGE_SIZE: Final = 32
PATCH_SIZE: Final = 8
IMAGE_TOKENS: Final = (IMAGE_SIZE // PATCH_SIZE) ** 2
"""Prompt tokens one image takes in vLLM (patch features; the CLS feature is not selected)."""


def build(out: Path) -> dict[str, object]:
    """Write the processor (tokenizer + image processor) and the model into ``out``."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_model.build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
        chat_template=tiny_model.CHAT_TEMPLATE,
    )
    processor.save_pretrained(str(out))

    vision = CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=64,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=tiny_model.text_config(tokenizer),
        image_token_index=image_token_id,
        image_seq_length=IMAGE_TOKENS,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        tie_word_embeddings=False,
    )
    config.torch_dtype = "bfloat16"
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(str(out), safe_serialization=True)
    _legacy_vision_tower_names(out / "model.safetensors")
    summary: dict[str, object] = {
        "architecture": "LlavaForConditionalGeneration",
        "vocab": len(tokenizer),
        "image_token": IMAGE_TOKEN,
        "image_token_id": image_token_id,
        "image_tokens": IMAGE_TOKENS,
        "params": sum(p.numel() for p in model.parameters()),
    }
    # Written last: its presence marks a complete model directory.
    (out / "DGD-MODEL.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _legacy_vision_tower_names(weights: Path) -> None:
    """Rename the CLIP tower's weights to the layout vLLM 0.31.0 loads.

    transformers 5 saves them as ``vision_tower.embeddings...``; vLLM's LLaVA loader wants
    the ``vision_tower.vision_model.embeddings...`` of the published LLaVA checkpoints and
    fails on the former ("There is no module or parameter named 'vision_tower.embeddings'").
    """
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(weights))
    prefix = "vision_tower."
    renamed = {
        (prefix + "vision_model." + k[len(prefix) :] if k.startswith(prefix) else k): v
        for k, v in tensors.items()
    }
    save_file(renamed, str(weights), metadata={"format": "pt"})


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m dgd_operator.dev.tiny_vlm OUT_DIR")
    print(json.dumps(build(Path(sys.argv[1]))))
