"""List+watch informers: one watch stream per kind and namespace, delivered to a callback.

Why not kopf's watching and indexes: with `@kopf.index`, kopf holds every object of the initial
listing behind one shared readiness condition, and each object's worker wakes on every other
object's progress, so resuming N objects costs O(N^2) wake-ups (a restart over 300 graphs x 11
children spent most of its time in `asyncio.Condition.notify_all`). An informer lists (in pages),
delivers every object, says it is synced, then watches from the listing's resourceVersion:
O(N) to resume.

Every event reaches `on_event(type, object)` in order, with type `ADDED`, `MODIFIED` or
`DELETED`. After a relist (the watch expired: 410 Gone) objects that vanished meanwhile are
delivered as `DELETED`, so a consumer's store never keeps a ghost. Errors are retried with
backoff; an informer never gives up while it runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from dgd_operator.controllerkit.decoding import Decode, Shape
from dgd_operator.controllerkit.kubeapi import ApiError, KubeAPI, Manifest

logger = logging.getLogger("dgd_operator.informer")

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
EventHandler = Callable[[str, Manifest], None]
"""Receives (event type, object) for every change, in order."""

GONE = 410


class WatchClient(Protocol):
    """The two calls an informer makes."""

    async def list_page(
        self, path: str, params: Mapping[str, str], decode: Decode | None = None
    ) -> Manifest:
        """One page of a LIST (`metadata.continue` names the next one), decoded by `decode`
        (default: the whole JSON document)."""
        ...

    def watch_events(
        self, path: str, params: Mapping[str, str], decode: Decode | None = None
    ) -> AsyncIterator[Manifest]:
        """The events of one WATCH request, each decoded by `decode` (default: whole), until
        the server ends it."""
        ...


class WatchingKubeAPI(KubeAPI, WatchClient, Protocol):
    """A client for both a controller's requests and its informers."""


def uid_of(obj: Mapping[str, Any]) -> str:
    """The object's uid (its identity across renames and re-creations)."""
    return str((obj.get("metadata") or {}).get("uid") or "")


class Informer:
    """Lists then watches one collection (`path`, optionally selected), forever."""

    page_size_default = 100
    """Objects per LIST page. A page is decoded whole before its objects are delivered, and
    what the cache keeps of them is allocated among the page's own objects, so the page's
    size is paid in RSS at its peak and, fragmented, after it (benchmarks/cache_rss.py: the
    cache of 11,000 children took 59 MiB with pages of 500, 40 MiB with pages of 100). A
    LIST of 4,000 Deployments is then 40 requests instead of 8."""

    def __init__(
        self,
        client: WatchClient,
        path: str,
        on_event: EventHandler,
        *,
        api_version: str,
        kind: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = page_size_default,
        watch_timeout: int = 300,
        max_backoff: float = 30.0,
        shape: Shape[Any] | None = None,
    ) -> None:
        self.client = client
        self.path = path
        self.on_event = on_event
        self.api_version = api_version
        self.kind = kind
        self.selectors: dict[str, str] = {}
        if label_selector:
            self.selectors["labelSelector"] = label_selector
        if field_selector:
            self.selectors["fieldSelector"] = field_selector
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.shape = shape
        """Decodes only the fields the consumer keeps (None: every field)."""
        self.synced = asyncio.Event()
        """Set once the first listing has been delivered."""
        self._known: set[str] = set()

    def __repr__(self) -> str:
        selected = ",".join(f"{k}={v}" for k, v in self.selectors.items())
        return f"Informer({self.path}{'?' + selected if selected else ''})"

    def _deliver(self, type_: str, obj: Manifest) -> None:
        # Lists and watch events of a kind carry no apiVersion/kind on partial paths; set them.
        obj.setdefault("apiVersion", self.api_version)
        obj.setdefault("kind", self.kind)
        uid = uid_of(obj)
        if type_ == DELETED:
            self._known.discard(uid)
        else:
            type_ = MODIFIED if uid in self._known else ADDED
            self._known.add(uid)
        try:
            self.on_event(type_, obj)
        except Exception:  # a consumer bug must not stop the stream
            logger.exception("%r: handler failed on %s", self, type_)

    async def list_all(self) -> str:
        """List every object (page by page), deliver it, and drop what vanished; returns the
        listing's resourceVersion."""
        seen: set[str] = set()
        params: dict[str, str] = {**self.selectors, "limit": str(self.page_size)}
        while True:
            page = await self.client.list_page(
                self.path, params, self.shape.page if self.shape else None
            )
            for item in page.get("items") or []:
                seen.add(uid_of(item))
                self._deliver(ADDED, item)
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                version = str(meta.get("resourceVersion") or "")
                break
            params["continue"] = str(token)
        for uid in self._known - seen:
            gone = {"metadata": {"uid": uid}, "apiVersion": self.api_version, "kind": self.kind}
            self._deliver(DELETED, gone)
        return version

    async def watch_from(self, version: str) -> str | None:
        """Watch from `version` until the server ends the request; the last resourceVersion
        seen, or None when the version expired (410) and a relist is needed."""
        params = {
            **self.selectors,
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.watch_timeout),
        }
        decode = self.shape.event if self.shape else None
        async for event in self.client.watch_events(self.path, params, decode):
            type_ = str(event.get("type") or "")
            obj = event.get("object") or {}
            if type_ == "ERROR":
                if obj.get("code") == GONE:
                    return None
                raise ApiError(int(obj.get("code") or 500), "WatchError", str(obj.get("message")))
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if type_ in (ADDED, MODIFIED, DELETED):
                self._deliver(type_, obj)
        return version

    async def run(self) -> None:
        """List and watch until cancelled."""
        failures = 0
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self.list_all()
                    self.synced.set()
                version = await self.watch_from(version)
                failures = 0
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.status == GONE:
                    version = None
                    continue
                failures += 1
                logger.warning("%r: %s; retrying", self, exc)
            except Exception as exc:  # connection resets, decoding errors: retry the same way
                failures += 1
                logger.warning("%r: %r; retrying", self, exc)
            if failures:
                await asyncio.sleep(min(self.max_backoff, 0.5 * 2 ** min(failures, 8)))
