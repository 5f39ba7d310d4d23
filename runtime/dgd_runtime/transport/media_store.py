"""The side channel for media and embeddings: a NATS JetStream object store.

A request-plane message is capped by the NATS server's ``max_payload`` (1 MiB by default), far
below what a few images' embeddings take (a vision tower emits hundreds of patches times the
hidden size per image). Media bytes and embeddings therefore travel through an object store
(chunked by JetStream, no size limit but ours) and requests carry only ``dgd-obj://KEY``
references. Keys are content-derived (the media hash), so a repeated image is stored and
encoded once; objects expire after ``ttl`` seconds.

Nothing is ever truncated: a payload larger than ``max_bytes`` raises
:class:`MediaTooLargeError`, a missing object :class:`MediaMissingError`.
"""

from __future__ import annotations

import asyncio
from typing import Final

from nats.aio.client import Client as NatsClient
from nats.js.api import ObjectStoreConfig
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

SCHEME: Final = "dgd-obj://"
DEFAULT_BUCKET: Final = "dgd-media"
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
DEFAULT_TTL_S: Final = 600.0


class MediaStoreError(RuntimeError):
    """The media side channel failed."""


class MediaTooLargeError(MediaStoreError):
    """A payload exceeds the store's per-object limit (it is refused, never truncated)."""


class MediaMissingError(MediaStoreError):
    """A ``dgd-obj://`` reference names no stored object (expired or never written)."""


def is_store_url(url: str) -> bool:
    """Whether ``url`` references an object of the media store."""
    return url.startswith(SCHEME)


def store_url(key: str) -> str:
    """The reference to object ``key``."""
    return SCHEME + key


class MediaStore:
    """Put/get media and embeddings by key in one JetStream object store bucket."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        bucket: str = DEFAULT_BUCKET,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ttl: float = DEFAULT_TTL_S,
    ) -> None:
        """Nothing is created until first use (JetStream may not be needed at all)."""
        self._nc = nc
        self.bucket = bucket
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._store: ObjectStore | None = None
        self._lock = asyncio.Lock()

    async def _bucket(self) -> ObjectStore:
        if self._store is not None:
            return self._store
        async with self._lock:
            if self._store is None:
                js = self._nc.jetstream()
                try:
                    self._store = await js.object_store(self.bucket)
                except (BucketNotFoundError, NotFoundError):
                    self._store = await js.create_object_store(
                        self.bucket, ObjectStoreConfig(ttl=self.ttl)
                    )
            return self._store

    async def contains(self, key: str) -> bool:
        """Whether ``key`` is stored (and not deleted)."""
        store = await self._bucket()
        try:
            info = await store.get_info(key)
        except (ObjectNotFoundError, NotFoundError):
            return False
        return not info.deleted

    async def put(self, key: str, data: bytes, *, what: str) -> str:
        """Store ``data`` under ``key``; returns its ``dgd-obj://`` reference.

        ``what`` names the payload in the error when it is over the limit.
        """
        if len(data) > self.max_bytes:
            raise MediaTooLargeError(
                f"{what}: {len(data)} bytes exceed the media store's limit of "
                f"{self.max_bytes} bytes"
            )
        store = await self._bucket()
        await store.put(key, data)
        return store_url(key)

    async def get(self, url: str) -> bytes:
        """The bytes ``url`` (a ``dgd-obj://`` reference) names."""
        if not is_store_url(url):
            raise MediaStoreError(f"not a media store reference: {url[:64]!r}")
        key = url[len(SCHEME) :]
        store = await self._bucket()
        try:
            result = await store.get(key)
        except (ObjectNotFoundError, NotFoundError):
            raise MediaMissingError(f"media object {key!r} is not in the store") from None
        data = result.data
        if data is None:
            raise MediaMissingError(f"media object {key!r} has no data")
        return bytes(data)
