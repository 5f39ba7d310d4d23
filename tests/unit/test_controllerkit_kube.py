"""The aiohttp client and the kind registry of the controller kit."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from tests.unit.kube_stub import stub_api_client

from dgd_operator.controllerkit.kubeapi import Kinds, ResourceKind, UnknownKindError

pytestmark = pytest.mark.unit


def test_unknown_kinds_raise_instead_of_guessing_a_plural() -> None:
    kinds = Kinds((ResourceKind("example.com/v1", "Widget", "widgets"),))
    assert kinds.of("apps/v1", "Deployment").plural == "deployments"
    assert (
        kinds.of("example.com/v1", "Widget").collection_path("ns")
        == "/apis/example.com/v1/namespaces/ns/widgets"
    )
    with pytest.raises(UnknownKindError, match=r"networking\.k8s\.io/v1/NetworkPolicy"):
        kinds.of("networking.k8s.io/v1", "NetworkPolicy")
    with pytest.raises(UnknownKindError):
        Kinds().of("example.com/v1", "Widget")  # CRD kinds exist only where they are passed in


def test_resource_kind_paths() -> None:
    namespace_kind = Kinds().of("v1", "Namespace")
    assert namespace_kind.collection_path("ignored") == "/api/v1/namespaces"
    role = Kinds().of("rbac.authorization.k8s.io/v1", "Role")
    assert (role.group, role.version) == ("rbac.authorization.k8s.io", "v1")
    assert (
        role.object_path("ns", "r", "status")
        == "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles/r/status"
    )


async def test_kube_client_bounds_requests_in_flight() -> None:

    state = {"now": 0, "most": 0}

    async def handler(request: web.Request) -> web.Response:
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
        await asyncio.sleep(0.02)
        state["now"] -= 1
        return web.json_response(
            {"kind": "ConfigMap", "metadata": {"name": request.match_info["name"]}}
        )

    path = "/api/v1/namespaces/ns/configmaps/{name}"
    async with stub_api_client(path, handler, max_in_flight=3) as client:
        found = await asyncio.gather(
            *(client.get("v1", "ConfigMap", "ns", f"c{i}") for i in range(12))
        )
    assert [obj and obj["metadata"]["name"] for obj in found] == [f"c{i}" for i in range(12)]
    assert state["most"] == 3


def _event(n: int, pad: int = 0) -> bytes:
    obj = {"kind": "ConfigMap", "metadata": {"name": f"c{n}"}, "data": {"x": "é" * pad}}
    return json.dumps({"type": "ADDED", "object": obj}).encode()


# How the API server's bytes may reach the client: events cut anywhere, several in one chunk,
# a large one (over aiohttp's 128 KiB line limit) in many chunks, and blank keep-alive lines.
WATCH_STREAM = b"\n".join([_event(0), _event(1), _event(2, pad=200_000), b"", _event(3)]) + b"\n"
CUTS = {
    "whole": [len(WATCH_STREAM)],
    "mid-line": [10, 25, len(WATCH_STREAM)],
    "at every newline": [i + 1 for i, b in enumerate(WATCH_STREAM) if b == ord("\n")],
    "16 KiB parts": [*range(16384, len(WATCH_STREAM), 16384), len(WATCH_STREAM)],
    "newline first": [len(_event(0)), len(WATCH_STREAM)],
}


@pytest.mark.parametrize("cuts", list(CUTS.values()), ids=list(CUTS))
async def test_watch_events_are_decoded_however_the_stream_is_cut(cuts: list[int]) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        start = 0
        for end in cuts:
            await response.write(WATCH_STREAM[start:end])
            await asyncio.sleep(0)  # each part its own chunk on the wire (mostly)
            start = end
        await response.write_eof()
        return response

    async with stub_api_client("/api/v1/namespaces/ns/configmaps", handler) as client:
        events = [
            event
            async for event in client.watch_events(
                "/api/v1/namespaces/ns/configmaps", {"watch": "true"}
            )
        ]
    assert [e["object"]["metadata"]["name"] for e in events] == ["c0", "c1", "c2", "c3"]
    assert events[2]["object"]["data"]["x"] == "é" * 200_000
