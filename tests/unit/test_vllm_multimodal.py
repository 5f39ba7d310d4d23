"""How the vLLM engine takes images: which models accept them, how the prompt is rewritten.

No vLLM and no Pillow needed: the model is a directory with a ``config.json``, the prompt
rewrite is pure. Decoding and generation with a real model are the engine tier's
(tests/engine/test_multimodal.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dgd_runtime.engines.vllm import (
    VllmEngine,
    VllmEngineConfig,
    fixed_image_tokens,
    image_token_id,
    model_config_json,
)
from dgd_runtime.preprocess.multimodal import (
    MEDIA_PLACEHOLDER_ID,
    expand_placeholders,
    replace_placeholder_runs,
)
from dgd_runtime.protocol import MediaRef, ModelCard
from dgd_runtime.worker.service import card_with_role

pytestmark = pytest.mark.unit

P = MEDIA_PLACEHOLDER_ID
IMG = 1024


def _model(tmp_path: Path, config: Any) -> str:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return str(tmp_path)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"model_type": "llava", "image_token_index": 1024}, 1024),
        ({"model_type": "qwen2_vl", "image_token_id": 151655}, 151655),
        ({"model_type": "llama", "vocab_size": 1024}, None),
        ({"image_token_index": True}, None),  # not a token id
    ],
)
def test_image_token_comes_from_config_json(config: dict[str, Any], expected: int) -> None:
    assert image_token_id(config) == expected


def test_config_json_of_a_local_model_dir_only(tmp_path: Path) -> None:
    assert model_config_json(None) == {}
    assert model_config_json("some-org/some-hub-model") == {}
    (tmp_path / "config.json").write_text("{not json")
    assert model_config_json(str(tmp_path)) == {}
    assert model_config_json(_model(tmp_path, ["not", "a", "mapping"])) == {}
    assert model_config_json(_model(tmp_path, {"image_token_index": 7})) == {"image_token_index": 7}


CLIP_32_8 = {"model_type": "clip_vision_model", "image_size": 32, "patch_size": 8}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        # The tiny LLaVA: 4x4 patches, CLS dropped (vLLM counts the same).
        ({"model_type": "llava", "vision_config": CLIP_32_8}, 16),
        ({"model_type": "llava", "vision_config": {"image_size": 336, "patch_size": 14}}, 576),
        (
            {
                "model_type": "llava",
                "vision_config": CLIP_32_8,
                "vision_feature_select_strategy": "full",
            },
            17,
        ),
        # Towers and layouts whose count is not a constant of the config.
        ({"model_type": "llava", "vision_config": {**CLIP_32_8, "model_type": "siglip"}}, None),
        ({"model_type": "llava_next", "vision_config": CLIP_32_8}, None),
        ({"model_type": "qwen2_vl", "image_token_id": 5}, None),
        ({"model_type": "llava", "vision_config": {"image_size": 32}}, None),
    ],
)
def test_fixed_image_tokens(config: dict[str, Any], expected: int | None) -> None:
    assert fixed_image_tokens(config) == expected


def test_card_advertises_images_only_for_a_vision_language_model(tmp_path: Path) -> None:
    vlm = VllmEngine(
        VllmEngineConfig(
            SimpleNamespace(
                model=_model(tmp_path, {"image_token_index": IMG}), kv_transfer_config=None
            )
        )
    )
    text = VllmEngine(VllmEngineConfig(SimpleNamespace(model=None, kv_transfer_config=None)))
    card = ModelCard(name="m", model_path="/m", context_length=0, kv_block_size=0)
    assert card_with_role(card, vlm, "aggregated").extra["media_kinds"] == ["image"]
    # The frontend answers 400 "does not accept image input" for a text model.
    assert card_with_role(card, text, "aggregated").extra["media_kinds"] == []
    assert "media_tokens" not in card_with_role(card, text, "aggregated").extra


def test_card_carries_the_fixed_image_token_count(tmp_path: Path) -> None:
    config = {"model_type": "llava", "image_token_index": IMG, "vision_config": CLIP_32_8}
    vlm = VllmEngine(
        VllmEngineConfig(SimpleNamespace(model=_model(tmp_path, config), kv_transfer_config=None))
    )
    card = ModelCard(name="m", model_path="/m", context_length=0, kv_block_size=0)
    assert card_with_role(card, vlm, "aggregated").extra["media_tokens"] == {"image": 16}


@pytest.mark.parametrize(
    ("tokens", "counts", "expected"),
    [
        # One item amid text: its run becomes the single image token.
        ([5, 6, P, P, P, P, 7], [4], [5, 6, IMG, 7]),
        # Two items, back to back and at the ends.
        ([P, P, P, P], [2, 2], [IMG, IMG]),
        ([P, P, 9, P, P, P], [2, 3], [IMG, 9, IMG]),
        # A text token that happens to be the placeholder id, in a shorter run, stays text.
        ([P, 3, P, P, P, 4], [3], [P, 3, IMG, 4]),
    ],
)
def test_placeholder_runs_become_one_media_token_each(
    tokens: list[int], counts: list[int], expected: list[int]
) -> None:
    assert replace_placeholder_runs(tokens, counts, P, IMG) == expected


def test_replacing_undoes_the_frontends_expansion() -> None:
    pieces = [[11, 12], [13], [14, 15]]
    prompt = expand_placeholders(pieces, [4, 9], P)
    assert replace_placeholder_runs(prompt, [4, 9], P, IMG) == [11, 12, IMG, 13, IMG, 14, 15]


def test_a_missing_run_names_the_item() -> None:
    with pytest.raises(ValueError, match="media item 1: the prompt has no run of 4"):
        replace_placeholder_runs([P, P, P, P, 5, P, P], [4, 4], P, IMG)


def test_a_text_model_refuses_media_before_vllm_sees_it() -> None:
    text = VllmEngine(VllmEngineConfig(SimpleNamespace(model=None, kv_transfer_config=None)))
    with pytest.raises(ValueError, match="takes no media input"):
        text._multimodal_prompt([P], [MediaRef("image", "", 1, b"x")])


def test_the_image_token_typed_as_text_is_refused(tmp_path: Path) -> None:
    vlm = VllmEngine(
        VllmEngineConfig(
            SimpleNamespace(
                model=_model(tmp_path, {"image_token_index": IMG}), kv_transfer_config=None
            )
        )
    )
    with pytest.raises(ValueError, match="image token as text"):
        vlm._multimodal_prompt([IMG, P], [MediaRef("image", "", 1, b"x")])
    with pytest.raises(ValueError, match=r"media item 0 \(video\): this model takes images only"):
        vlm._multimodal_prompt([P], [MediaRef("video", "", 1, b"x")])
