"""Informers: list in pages, then watch; a relist after 410 Gone delivers what vanished."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from dgd_operator.controllerkit.informer import Informer
from dgd_operator.controllerkit.kubeapi import Manifest

pytestmark = pytest.mark.unit


def obj(uid: str, rv: str = "1") -> Manifest:
    return {"metadata": {"uid": uid, "name": uid, "resourceVersion": rv}}


class FakeWatchClient:
    """Serves scripted listings (pages) and watch streams, recording the requests."""

    def __init__(self, listings: list[list[Manifest]], streams: list[list[Manifest]]) -> None:
        self.listings = listings
        self.streams = streams
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.exhausted = asyncio.Event()

    async def list_page(self, path: str, params: Mapping[str, str]) -> Manifest:
        self.requests.append(("list", dict(params)))
        items = self.listings[0]
        if "continue" not in params and len(items) > 1:
            # First page of a two-page listing.
            return {"items": items[:1], "metadata": {"continue": "next", "resourceVersion": ""}}
        self.listings.pop(0)
        rest = items[1:] if "continue" in params else items
        return {"items": rest, "metadata": {"resourceVersion": "10"}}

    async def watch_events(
        self, path: str, params: Mapping[str, str]
    ) -> AsyncIterator[dict[str, Any]]:
        self.requests.append(("watch", dict(params)))
        if not self.streams:
            self.exhausted.set()
            await asyncio.Event().wait()
        for event in self.streams.pop(0):
            yield event


async def test_lists_in_pages_then_watches_from_the_listing_version() -> None:
    seen: list[tuple[str, str]] = []
    client = FakeWatchClient(
        [[obj("a"), obj("b")]],
        [
            [
                {"type": "MODIFIED", "object": obj("a", "11")},
                {"type": "BOOKMARK", "object": obj("", "12")},
            ]
        ],
    )
    informer = Informer(
        client, "/api/v1/namespaces/ns/services", lambda t, o: seen.append((t, o["metadata"]["uid"])),
        api_version="v1", kind="Service", label_selector="app=x", page_size=1,
    )  # fmt: skip
    task = asyncio.create_task(informer.run())
    await asyncio.wait_for(client.exhausted.wait(), 5)
    task.cancel()
    assert informer.synced.is_set()
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a")]
    kinds = [verb for verb, _ in client.requests]
    assert kinds == ["list", "list", "watch", "watch"]
    first_watch = client.requests[2][1]
    assert first_watch["resourceVersion"] == "10" and first_watch["labelSelector"] == "app=x"
    assert client.requests[3][1]["resourceVersion"] == "12"  # resumes after the bookmark


async def test_an_expired_watch_relists_and_reports_objects_gone_meanwhile() -> None:
    seen: list[tuple[str, str]] = []
    client = FakeWatchClient(
        [[obj("a"), obj("b")], [obj("b", "20"), obj("c", "21")]],
        [[{"type": "ERROR", "object": {"code": 410, "message": "too old"}}]],
    )
    informer = Informer(
        client, "/apis/apps/v1/deployments", lambda t, o: seen.append((t, o["metadata"]["uid"])),
        api_version="apps/v1", kind="Deployment",
    )  # fmt: skip
    task = asyncio.create_task(informer.run())
    await asyncio.wait_for(client.exhausted.wait(), 5)
    task.cancel()
    assert seen[:2] == [("ADDED", "a"), ("ADDED", "b")]
    assert sorted(seen[2:]) == [("ADDED", "c"), ("DELETED", "a"), ("MODIFIED", "b")]


async def test_delivered_objects_carry_their_kind() -> None:
    seen: list[Manifest] = []
    client = FakeWatchClient([[obj("a")]], [])
    informer = Informer(
        client, "/api/v1/pods", lambda t, o: seen.append(o), api_version="v1", kind="Pod"
    )
    task = asyncio.create_task(informer.run())
    await asyncio.wait_for(client.exhausted.wait(), 5)
    task.cancel()
    assert seen[0]["apiVersion"] == "v1" and seen[0]["kind"] == "Pod"
