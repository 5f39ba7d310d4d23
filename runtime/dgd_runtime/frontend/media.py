"""Loading a request's media in the frontend: ``data:`` URLs decoded, http(s) URLs fetched.

Each item is fetched with a size cap and a timeout, validated (an undecodable image is the
client's error, answered 400 naming its content part) and hashed; the bytes ride on the
:class:`~dgd_runtime.protocol.MediaRef` (``payload``, never on the wire) to the staged
backend, which moves them to the media store.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

import aiohttp

from dgd_runtime.preprocess.multimodal import (
    MediaInputError,
    MediaPart,
    decode_data_url,
    media_hash,
    placeholder_count,
)
from dgd_runtime.protocol import MediaRef

DEFAULT_MAX_MEDIA_BYTES: Final = 20 * 1024 * 1024
DEFAULT_FETCH_TIMEOUT_S: Final = 10.0


@dataclass(slots=True)
class LoadedMedia:
    """Media of one request, ready for the prompt and the backend.

    Each ref's ``url`` is the request path of its content part (what errors name) and its
    ``payload`` the bytes; the staged backend stores them and swaps in a store reference.
    """

    refs: list[MediaRef]
    placeholder_counts: list[int]


class MediaLoader:
    """Fetches and validates media items (one shared HTTP session per frontend)."""

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_MEDIA_BYTES,
        timeout_s: float = DEFAULT_FETCH_TIMEOUT_S,
    ) -> None:
        """``max_bytes``: largest item accepted; ``timeout_s``: per http(s) fetch."""
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def load(self, parts: list[MediaPart]) -> LoadedMedia:
        """Fetch, validate and hash every part (concurrently); the first error wins."""
        datas = await asyncio.gather(*(self._bytes(p) for p in parts))
        refs: list[MediaRef] = []
        counts: list[int] = []
        for part, data in zip(parts, datas, strict=True):
            counts.append(placeholder_count(part.kind, data, part.param))
            refs.append(MediaRef(part.kind, part.param, media_hash(part.kind, data), data))
        return LoadedMedia(refs, counts)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _bytes(self, part: MediaPart) -> bytes:
        if part.url.startswith("data:"):
            data = decode_data_url(part.url, part.param, self.max_bytes)
        else:
            data = await self._fetch(part)
        if not data:
            raise MediaInputError(f"{part.kind} is empty", part.param)
        return data

    async def _fetch(self, part: MediaPart) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        try:
            async with self._session.get(part.url, allow_redirects=True) as resp:
                if resp.status != 200:
                    raise MediaInputError(
                        f"fetching {part.kind} failed: HTTP {resp.status}", part.param
                    )
                if resp.content_length is not None and resp.content_length > self.max_bytes:
                    raise MediaInputError(
                        f"{part.kind} is larger than {self.max_bytes} bytes", part.param
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise MediaInputError(
                            f"{part.kind} is larger than {self.max_bytes} bytes", part.param
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except TimeoutError:
            raise MediaInputError(
                f"fetching {part.kind} timed out after {self.timeout_s:g}s", part.param
            ) from None
        except aiohttp.ClientError as exc:
            raise MediaInputError(f"fetching {part.kind} failed: {exc}", part.param) from None
