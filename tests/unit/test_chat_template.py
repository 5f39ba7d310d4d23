"""Chat templates render in a sandbox, are compiled once, and fail with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dgd_runtime.local.model_dir import build_model_dir
from dgd_runtime.preprocess.chat_template import ChatTemplate, ChatTemplateError, compile_template
from dgd_runtime.preprocess.tokenizer import ModelDirError, load_preprocessor

pytestmark = pytest.mark.unit

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_chatml_from_model_dir(tmp_path: Path) -> None:
    prep = load_preprocessor(str(build_model_dir(tmp_path / "m")))
    text = prep.chat_template.render(MESSAGES)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert prep.chat_template.render(MESSAGES, add_generation_prompt=False).endswith("<|im_end|>\n")
    eos = prep.tokenizer.token_to_id("<|im_end|>")
    assert eos in prep.eos_token_ids
    # Special tokens in the rendered prompt encode as single ids.
    assert prep.encode(text).count(eos) == 2


def test_template_is_compiled_once() -> None:
    source = "{{ messages[0]['content'] }}"
    assert compile_template(source) is compile_template(source)


def test_raise_exception_and_tojson() -> None:
    tmpl = ChatTemplate(
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}"
        "{% endif %}{{ messages | tojson }}{{ bos_token }}",
        bos_token="<s>",
    )
    assert (
        tmpl.render([{"role": "user", "content": "é"}]) == '[{"role": "user", "content": "é"}]<s>'
    )
    with pytest.raises(ChatTemplateError, match="first must be user"):
        tmpl.render([{"role": "system", "content": "x"}])


def test_sandbox_blocks_attribute_escape() -> None:
    tmpl = ChatTemplate("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(ChatTemplateError):
        tmpl.render(MESSAGES)


def test_invalid_template_is_reported() -> None:
    with pytest.raises(ChatTemplateError, match="invalid chat template"):
        ChatTemplate("{% for %}")


def test_tools_are_passed_to_the_template() -> None:
    tmpl = ChatTemplate("{% for t in tools %}{{ t.function.name }}{% endfor %}")
    assert tmpl.render(MESSAGES, tools=[{"type": "function", "function": {"name": "get"}}]) == "get"


def test_named_template_list_and_missing_tokenizer(tmp_path: Path) -> None:
    model = build_model_dir(tmp_path / "m")
    cfg_path = model / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = [
        {"name": "default", "template": "D{{ messages|length }}"},
        {"name": "tool_use", "template": "T"},
    ]
    cfg_path.write_text(json.dumps(cfg))
    assert load_preprocessor(str(model)).chat_template.render(MESSAGES) == "D2"
    with pytest.raises(ModelDirError, match=r"tokenizer\.json"):
        load_preprocessor(str(tmp_path / "nowhere"))


@pytest.mark.parametrize("fast_encoder", [True, False])
def test_ascii_fast_path_tokenizes_identically(tmp_path: Path, fast_encoder: bool) -> None:
    model = build_model_dir(tmp_path / "m")
    spec = json.loads((model / "tokenizer.json").read_text())
    spec["normalizer"] = {"type": "NFC"}
    if not fast_encoder:  # a pre-tokenizer the ASCII encoder does not reproduce
        spec["pre_tokenizer"] = {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                spec["pre_tokenizer"],
            ],
        }
    (model / "tokenizer.json").write_text(json.dumps(spec))
    prep = load_preprocessor(str(model))
    assert (prep.ascii_encoder is not None) is fast_encoder
    # The normalizer-less copy only where the fast encoder does not take ASCII text.
    assert (prep.ascii_tokenizer is None) is fast_encoder
    for text in ("plain ascii text, the quick fox 123", "cafe\u0301 composed by NFC", "日本"):
        assert prep.encode(text) == list(prep.tokenizer.encode(text, add_special_tokens=False).ids)
