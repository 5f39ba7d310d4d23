"""Media content parts of chat messages: parsing, validation and prompt placeholders (pure).

The OpenAI chat API carries media as content parts: ``{"type": "image_url", "image_url":
{"url": ...}}``, ``{"type": "video_url", "video_url": {"url": ...}}`` and ``{"type":
"input_audio", "input_audio": {"data": <base64>, "format": "wav"|"mp3"}}``. Each becomes a
:class:`MediaPart` naming the part (``messages[0].content[1].image_url``) so every error the
client gets points at the part that caused it. Fetched bytes are checked here without a
decoder library: an image must have a recognisable header with its dimensions (PNG, JPEG,
GIF, WebP, BMP), a video a known container signature (MP4/MOV, WebM/MKV), audio a WAV or MP3
header. The dimensions give the number of placeholder tokens the image takes in the prompt
(one per 28x28 pixel patch after the 2x2 merge of Qwen2-VL-style vision towers).
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, Final, Literal

MediaKind = Literal["image", "video", "audio"]


class MediaInputError(ValueError):
    """A media input of a request cannot be used (undecodable, too large, unsupported).

    ``param`` names the offending content part (``messages[0].content[1].image_url``) when
    known; the frontend answers 400 with it.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class MediaItemError(MediaInputError):
    """An engine cannot use item ``index`` of a request's media (e.g. its decoder refused it).

    Raised in the worker, which knows the item only by its position in the request; the
    frontend maps the index back to the content part it came from.
    """

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


MEDIA_PLACEHOLDER: Final = "\ue000"
"""Stands for one media item in the rendered prompt until it is tokenized (a private-use char)."""
MEDIA_PLACEHOLDER_ID: Final = 0
"""Token id the placeholders of media items take in the prompt (their content is the media).

The frontend puts :func:`placeholder_count` of them per item; an engine with its own image
token (vLLM) finds each item's run by that count and puts its token there instead."""
PATCH_PIXELS: Final = 28
MAX_IMAGE_TOKENS: Final = 1024
VIDEO_TOKENS: Final = 64
AUDIO_TOKENS_PER_SECOND: Final = 25
MAX_AUDIO_TOKENS: Final = 750
DEFAULT_AUDIO_TOKENS: Final = 32
_PART_FIELD: Final[dict[str, MediaKind]] = {
    "image_url": "image",
    "video_url": "video",
    "input_audio": "audio",
}


@dataclass(slots=True)
class MediaPart:
    """One media content part: where it is and which part of the request it is."""

    kind: MediaKind
    param: str
    """The request path of the part, e.g. ``messages[0].content[1].image_url``."""
    url: str
    """``data:``/``http(s):`` URL (audio given inline is turned into a ``data:`` URL)."""


def media_part(kind_field: str, part: dict[str, Any], where: str) -> MediaPart:
    """The :class:`MediaPart` of content part ``part`` of type ``kind_field`` at ``where``."""
    kind = _PART_FIELD[kind_field]
    param = f"{where}.{kind_field}"
    value = part.get(kind_field)
    if kind_field == "input_audio":
        if not isinstance(value, dict) or not isinstance(value.get("data"), str):
            raise MediaInputError("'input_audio' needs a base64 'data' string", param)
        fmt = value.get("format", "wav")
        if fmt not in ("wav", "mp3"):
            raise MediaInputError(f"audio format {fmt!r} is not supported (wav, mp3)", param)
        return MediaPart(kind, param, f"data:audio/{fmt};base64,{value['data']}")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise MediaInputError(f"'{kind_field}' needs a 'url' string", param)
    if not url.startswith(("data:", "http://", "https://")):
        raise MediaInputError(f"{kind} URL must be a data: or http(s): URL", param)
    return MediaPart(kind, param, url)


def is_media_part_type(part_type: Any) -> bool:
    """Whether a content part's ``type`` is a media type this module handles."""
    return part_type in _PART_FIELD


def decode_data_url(url: str, param: str, max_bytes: int) -> bytes:
    """The bytes of a base64 ``data:`` URL (400-style :class:`MediaInputError` otherwise)."""
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise MediaInputError("data URL must be base64-encoded (data:<type>;base64,...)", param)
    if len(payload) * 3 // 4 > max_bytes:
        raise MediaInputError(f"media is larger than {max_bytes} bytes", param)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaInputError(f"data URL is not valid base64: {exc}", param) from None


def media_hash(kind: str, data: bytes) -> int:
    """63-bit content hash of a media item (mixed into the KV block hashes)."""
    h = blake2b(kind.encode(), digest_size=8)
    h.update(data)
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


def placeholder_count(kind: str, data: bytes, param: str) -> int:
    """Validate ``data`` as ``kind`` and return how many prompt tokens it takes."""
    if kind == "image":
        width, height = image_size(data, param)
        patches = math.ceil(width / PATCH_PIXELS) * math.ceil(height / PATCH_PIXELS)
        return max(1, min(MAX_IMAGE_TOKENS, patches))
    if kind == "video":
        if not (data[4:8] == b"ftyp" or data[:4] == b"\x1a\x45\xdf\xa3"):
            raise MediaInputError("cannot decode video: not an MP4/MOV or WebM/MKV file", param)
        return VIDEO_TOKENS
    if kind == "audio":
        return _audio_tokens(data, param)
    raise MediaInputError(f"unsupported media kind {kind!r}", param)


def image_size(data: bytes, param: str) -> tuple[int, int]:
    """``(width, height)`` from an image's header; :class:`MediaInputError` if undecodable."""
    size: tuple[int, int] | None = None
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        size = struct.unpack(">II", data[16:24])
    elif data[:2] == b"\xff\xd8":
        size = _jpeg_size(data)
    elif data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        size = struct.unpack("<HH", data[6:10])
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size = _webp_size(data)
    elif data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        size = (w, abs(h))
    if size is None or size[0] <= 0 or size[1] <= 0:
        raise MediaInputError("cannot decode image: not a PNG, JPEG, GIF, WebP or BMP", param)
    return size


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    n = len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8 " and len(data) >= 30:
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _audio_tokens(data: bytes, param: str) -> int:
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) >= 44:
        byte_rate = int(struct.unpack("<I", data[28:32])[0])
        if byte_rate <= 0:
            raise MediaInputError("cannot decode audio: WAV header has no byte rate", param)
        seconds = max(0, len(data) - 44) / byte_rate
        return max(1, min(MAX_AUDIO_TOKENS, math.ceil(seconds * AUDIO_TOKENS_PER_SECOND)))
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return DEFAULT_AUDIO_TOKENS
    raise MediaInputError("cannot decode audio: not a WAV or MP3 file", param)


def expand_placeholders(
    pieces: list[list[int]], counts: list[int], placeholder_id: int
) -> list[int]:
    """Token ids of text ``pieces`` with ``counts[i]`` placeholder ids between piece i and i+1."""
    if len(pieces) != len(counts) + 1:
        raise ValueError("expected one more text piece than media items")
    ids: list[int] = list(pieces[0])
    for count, piece in zip(counts, pieces[1:], strict=True):
        ids.extend([placeholder_id] * count)
        ids.extend(piece)
    return ids


def replace_placeholder_runs(
    token_ids: list[int], counts: list[int], placeholder_id: int, media_token_id: int
) -> list[int]:
    """``token_ids`` with each media item's run of placeholders replaced by one media token.

    Item i's run is the first ``counts[i]`` consecutive ``placeholder_id`` s after item i-1's
    (the frontend put exactly that many there, see :func:`expand_placeholders`). An engine that
    expands its own media token into the item's features (vLLM) is handed this prompt.
    Raises :class:`ValueError` naming the item whose run is missing.
    """
    out: list[int] = []
    pos = 0
    n = len(token_ids)
    for i, count in enumerate(counts):
        start = pos
        while start < n:
            if token_ids[start] == placeholder_id:
                end = start
                while end < n and end - start < count and token_ids[end] == placeholder_id:
                    end += 1
                if end - start == count:
                    break
                start = end
            else:
                start += 1
        else:
            raise ValueError(f"media item {i}: the prompt has no run of {count} placeholders")
        out.extend(token_ids[pos:start])
        out.append(media_token_id)
        pos = start + count
    out.extend(token_ids[pos:])
    return out
