"""Informers: list in pages, then watch; a relist after 410 Gone delivers what vanished."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec
import orjson
import pytest

from dgd_operator.controllerkit.decoding import Decode, Shape
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

    async def list_page(
        self, path: str, params: Mapping[str, str], decode: Decode | None = None
    ) -> Manifest:
        self.requests.append(("list", dict(params)))
        items = self.listings[0]
        if "continue" not in params and len(items) > 1:
            # First page of a two-page listing.
            page = {"items": items[:1], "metadata": {"continue": "next", "resourceVersion": ""}}
        else:
            self.listings.pop(0)
            rest = items[1:] if "continue" in params else items
            page = {"items": rest, "metadata": {"resourceVersion": "10"}}
        # Through bytes, as the API server sends it.
        return (decode or orjson.loads)(orjson.dumps(page))

    async def watch_events(
        self, path: str, params: Mapping[str, str], decode: Decode | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        self.requests.append(("watch", dict(params)))
        if not self.streams:
            self.exhausted.set()
            await asyncio.Event().wait()
        for event in self.streams.pop(0):
            yield (decode or orjson.loads)(orjson.dumps(event))


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


class Lean(msgspec.Struct):
    """A shape naming `metadata` and `status` only."""

    metadata: Any = msgspec.UNSET
    status: Any = msgspec.UNSET


async def test_a_shaped_informer_delivers_only_the_named_fields_and_still_relists_on_410() -> None:
    seen: list[tuple[str, Manifest]] = []
    full = {**obj("a"), "spec": {"big": "x" * 1000}, "status": {"ready": True}}
    changed = {**obj("a", "11"), "spec": {"big": "y"}, "status": {"ready": False}}
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}
    client = FakeWatchClient([[full], [full]], [[{"type": "MODIFIED", "object": changed}, gone]])
    informer = Informer(
        client, "/apis/apps/v1/namespaces/ns/deployments", lambda t, o: seen.append((t, o)),
        api_version="apps/v1", kind="Deployment", shape=Shape(Lean),
    )  # fmt: skip
    task = asyncio.create_task(informer.run())
    await asyncio.wait_for(client.exhausted.wait(), 5)
    task.cancel()
    assert [t for t, _ in seen] == ["ADDED", "MODIFIED", "MODIFIED"]  # list, watch, relist
    assert [o.get("status") for _, o in seen] == [
        {"ready": True},
        {"ready": False},
        {"ready": True},
    ]
    assert all("spec" not in o for _, o in seen)
    assert seen[0][1]["kind"] == "Deployment" and seen[0][1]["metadata"]["uid"] == "a"
    assert [verb for verb, _ in client.requests] == ["list", "watch", "list", "watch"]
