"""Parsing and validation of OpenAI chat/completions request bodies (pure, no I/O).

Hand-written rather than pydantic: one pass over a dict, errors that name the parameter, and
no per-request model construction on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from dgd_runtime.preprocess.multimodal import (
    MEDIA_PLACEHOLDER,
    MediaInputError,
    MediaPart,
    is_media_part_type,
    media_part,
)


class ApiError(Exception):
    """An error answered with an OpenAI-style error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | int | None = None,
        err_type: str = "invalid_request_error",
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code if code is not None else status
        self.err_type = err_type
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        """The JSON error object: {"error": {"message", "type", "param", "code"}}."""
        return {
            "error": {
                "message": self.message,
                "type": self.err_type,
                "param": self.param,
                "code": self.code,
            }
        }


def bad(param: str, message: str) -> ApiError:
    """400 invalid_request_error naming `param`."""
    return ApiError(400, message, param=param)


@dataclass
class GenerationParams:
    """The validated, engine-relevant part of a chat or completions request."""

    model: str
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    min_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    ignore_eos: bool = False
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    # chat
    messages: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    add_generation_prompt: bool = True
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    media: list[MediaPart] = field(default_factory=list)
    """Media content parts in prompt order (each stands as MEDIA_PLACEHOLDER in ``messages``)."""
    # completions
    prompt_text: str | None = None
    prompt_ids: list[int] | None = None


# Accepted but without effect here (OpenAI clients send them routinely).
_COMMON_IGNORED: Final = frozenset(
    {
        "user",
        "metadata",
        "store",
        "service_tier",
        "logit_bias",
        "suffix",
        "best_of",
        "parallel_tool_calls",
        "tool_choice",
        "response_format",
        "modalities",
        "prediction",
        "reasoning_effort",
        "audio",
        "web_search_options",
        "functions",
        "function_call",
        "echo",
        "logprobs",
        "top_logprobs",
        "nvext",
        "repetition_penalty",
        "min_p",
        "skip_special_tokens",
        "spaces_between_special_tokens",
        "documents",
        "continue_final_message",
    }
)
_COMMON: Final = (
    frozenset(
        {
            "model",
            "stream",
            "stream_options",
            "max_tokens",
            "temperature",
            "top_p",
            "top_k",
            "seed",
            "n",
            "presence_penalty",
            "frequency_penalty",
            "stop",
            "ignore_eos",
            "min_tokens",
            "stop_token_ids",
        }
    )
    | _COMMON_IGNORED
)
CHAT_FIELDS: Final = _COMMON | {
    "messages",
    "max_completion_tokens",
    "tools",
    "add_generation_prompt",
    "chat_template_kwargs",
}
COMPLETION_FIELDS: Final = _COMMON | {"prompt"}


def _number(body: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(name, f"'{name}' must be a number")
    if not lo <= value <= hi:
        raise bad(name, f"'{name}' must be between {lo:g} and {hi:g}, got {value}")
    return float(value)


def _int(body: dict[str, Any], name: str, lo: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(name, f"'{name}' must be an integer")
    if lo is not None and value < lo:
        raise bad(name, f"'{name}' must be >= {lo}, got {value}")
    return value


def _bool(body: dict[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(name, f"'{name}' must be a boolean")
    return value


def _common(body: Any, allowed: frozenset[str]) -> GenerationParams:
    if not isinstance(body, dict):
        raise bad("body", "request body must be a JSON object")
    unknown = [k for k in body if k not in allowed]
    if unknown:
        raise bad(unknown[0], f"Unsupported parameter(s): {', '.join(sorted(unknown))}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("model", "'model' is required and must be a non-empty string")
    n = _int(body, "n", 1)
    if n is not None and n != 1:
        raise bad("n", "only n=1 is supported")
    for unsupported in ("logprobs", "echo"):
        if body.get(unsupported):
            raise bad(unsupported, f"'{unsupported}' is not supported")
    params = GenerationParams(model=model)
    params.stream = _bool(body, "stream")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise bad("stream_options", "'stream_options' must be an object")
        include = options.get("include_usage", False)
        if not isinstance(include, bool):
            raise bad("stream_options.include_usage", "'include_usage' must be a boolean")
        params.include_usage = include
    params.max_tokens = _int(body, "max_tokens", 1)
    params.min_tokens = _int(body, "min_tokens", 0) or 0
    params.temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    params.top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    top_k = _int(body, "top_k", -1)
    params.top_k = -1 if top_k is None or top_k == 0 else top_k
    params.seed = _int(body, "seed")
    params.presence_penalty = _number(body, "presence_penalty", 0.0, -2.0, 2.0)
    params.frequency_penalty = _number(body, "frequency_penalty", 0.0, -2.0, 2.0)
    ignore_eos = body.get("ignore_eos")
    nvext = body.get("nvext")
    if ignore_eos is None and isinstance(nvext, dict):
        ignore_eos = nvext.get("ignore_eos")
    if ignore_eos is not None and not isinstance(ignore_eos, bool):
        raise bad("ignore_eos", "'ignore_eos' must be a boolean")
    params.ignore_eos = bool(ignore_eos)
    stop = body.get("stop")
    if isinstance(stop, str):
        params.stop = [stop] if stop else []
    elif isinstance(stop, list):
        if len(stop) > 16 or not all(isinstance(s, str) for s in stop):
            raise bad("stop", "'stop' must be a string or a list of at most 16 strings")
        params.stop = [s for s in stop if s]
    elif stop is not None:
        raise bad("stop", "'stop' must be a string or a list of strings")
    stop_ids = body.get("stop_token_ids")
    if stop_ids is not None:
        if not isinstance(stop_ids, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in stop_ids
        ):
            raise bad("stop_token_ids", "'stop_token_ids' must be a list of integers")
        params.stop_token_ids = list(stop_ids)
    return params


def _message_content(index: int, content: Any, media: list[MediaPart]) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for j, part in enumerate(content):
            where = f"messages[{index}].content[{j}]"
            if not isinstance(part, dict):
                raise bad(where, "each content part must be an object")
            kind = part.get("type")
            if kind == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise bad(f"{where}.text", "a text part needs a 'text' string")
                # The placeholder character is ours: a client's copy would shift the media.
                parts.append(text.replace(MEDIA_PLACEHOLDER, ""))
            elif is_media_part_type(kind):
                try:
                    media.append(media_part(str(kind), part, where))
                except MediaInputError as exc:
                    raise bad(exc.param or where, str(exc)) from None
                parts.append(MEDIA_PLACEHOLDER)
            else:
                raise bad(
                    where,
                    f"unsupported content part type {kind!r} "
                    "(supported: text, image_url, video_url, input_audio)",
                )
        return "".join(parts)
    raise bad(f"messages[{index}].content", "message content must be a string or a list of parts")


def parse_chat_request(body: Any) -> GenerationParams:
    """Validate a /v1/chat/completions body."""
    params = _common(body, CHAT_FIELDS)
    mct = _int(body, "max_completion_tokens", 1)
    if mct is not None:
        params.max_tokens = mct
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages", "'messages' must be a non-empty list")
    normalized: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise bad(f"messages[{i}]", "each message must be an object")
        role = msg.get("role")
        if not isinstance(role, str) or not role:
            raise bad(f"messages[{i}].role", "each message needs a string 'role'")
        if "content" in msg and not isinstance(msg["content"], str):
            msg = {**msg, "content": _message_content(i, msg["content"], params.media)}
        elif "content" not in msg:
            msg = {**msg, "content": ""}
        normalized.append(msg)
    params.messages = normalized
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise bad("tools", "'tools' must be a list of objects")
        params.tools = tools
    params.add_generation_prompt = _bool(body, "add_generation_prompt", True)
    kwargs = body.get("chat_template_kwargs")
    if kwargs is not None:
        if not isinstance(kwargs, dict):
            raise bad("chat_template_kwargs", "'chat_template_kwargs' must be an object")
        params.chat_template_kwargs = kwargs
    return params


def parse_completion_request(body: Any) -> GenerationParams:
    """Validate a /v1/completions body."""
    params = _common(body, COMPLETION_FIELDS)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        params.prompt_text = prompt
    elif (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt)
    ):
        params.prompt_ids = list(prompt)
    elif isinstance(prompt, list) and len(prompt) > 1:
        raise bad("prompt", "batched prompts are not supported; send one prompt per request")
    else:
        raise bad("prompt", "'prompt' must be a string or a list of token ids")
    if params.max_tokens is None:
        params.max_tokens = 16  # OpenAI's default for legacy completions
    return params
