"""The aiohttp client and the kind registry of the controller kit."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from dgd_operator.controllerkit.kube import Credentials, KubeClient
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

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/configmaps/{name}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        client = KubeClient(
            Credentials(server=f"http://127.0.0.1:{port}"), field_manager="test", max_in_flight=3
        )
        try:
            found = await asyncio.gather(
                *(client.get("v1", "ConfigMap", "ns", f"c{i}") for i in range(12))
            )
        finally:
            await client.close()
        assert [obj and obj["metadata"]["name"] for obj in found] == [f"c{i}" for i in range(12)]
        assert state["most"] == 3
    finally:
        await runner.cleanup()
