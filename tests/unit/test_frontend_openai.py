"""Validation of OpenAI request bodies: clear 400s naming the parameter."""

from __future__ import annotations

from typing import Any

import pytest

from dgd_runtime.frontend.openai import ApiError, parse_chat_request, parse_completion_request

pytestmark = pytest.mark.unit


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_full_chat_request() -> None:
    p = parse_chat_request(
        chat(
            stream=True,
            stream_options={"include_usage": True},
            max_completion_tokens=7,
            temperature=0.5,
            top_p=0.9,
            top_k=20,
            seed=3,
            presence_penalty=0.1,
            frequency_penalty=-0.2,
            ignore_eos=True,
            stop="\n",
            user="u",
        )
    )
    assert (p.stream, p.include_usage, p.max_tokens, p.temperature, p.top_p, p.top_k, p.seed) == (
        True,
        True,
        7,
        0.5,
        0.9,
        20,
        3,
    )
    assert (p.presence_penalty, p.frequency_penalty, p.ignore_eos, p.stop) == (
        0.1,
        -0.2,
        True,
        ["\n"],
    )


def test_nvext_ignore_eos_and_content_parts() -> None:
    p = parse_chat_request(
        {
            "model": "m",
            "nvext": {"ignore_eos": True},
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            ],
        }
    )
    assert p.ignore_eos is True
    assert p.messages[0]["content"] == "ab"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        (chat(n=2), "n"),
        (chat(temperature="hot"), "temperature"),
        (chat(temperature=3), "temperature"),
        (chat(max_tokens=0), "max_tokens"),
        (chat(max_tokens=True), "max_tokens"),
        (chat(stop=[1]), "stop"),
        (chat(stream="yes"), "stream"),
        (chat(stream_options=[]), "stream_options"),
        (chat(bogus=1), "bogus"),
        (chat(logprobs=True), "logprobs"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].image_url",
        ),
        ([1, 2], "body"),
    ],
)
def test_chat_errors_name_the_parameter(body: Any, param: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_chat_request(body)
    assert info.value.status == 400
    assert info.value.param == param
    assert info.value.body()["error"]["type"] == "invalid_request_error"


def test_completion_prompts() -> None:
    assert parse_completion_request({"model": "m", "prompt": "hi"}).prompt_text == "hi"
    assert parse_completion_request({"model": "m", "prompt": [1, 2]}).prompt_ids == [1, 2]
    assert parse_completion_request({"model": "m", "prompt": ["hi"]}).prompt_text == "hi"
    assert parse_completion_request({"model": "m", "prompt": "x"}).max_tokens == 16
    for prompt in (None, ["a", "b"], [], {"x": 1}):
        with pytest.raises(ApiError) as info:
            parse_completion_request({"model": "m", "prompt": prompt})
        assert info.value.param == "prompt"
