"""kopf registration: what is watched, how, and that every per-event handler is a coroutine."""

from __future__ import annotations

import base64
import inspect
import json
from collections.abc import Callable
from typing import Any

import kopf
import pytest
from tests.unit.reconcile_fakes import FakeKube

from dgd_operator.handlers import (
    GROUP_POD_SELECTOR,
    docker_config_registries,
    kopf_settings,
    register,
)
from dgd_operator.reconcile.controller import Controller
from dgd_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit


def test_docker_config_registries_reads_hosts_only() -> None:
    config = {"auths": {"nvcr.io": {"auth": "eA=="}, "https://index.docker.io/v1/": {}}}
    secret = {"data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}
    assert docker_config_registries(secret) == ("https://index.docker.io/v1/", "nvcr.io")
    assert docker_config_registries({"data": {".dockerconfigjson": "not base64!"}}) == ()
    assert docker_config_registries({}) == ()


def test_only_graph_pods_are_watched_server_side() -> None:
    pods = kopf.Resource("", "v1", "pods", namespaced=True)
    assert kopf_settings().watching.label_selectors.collect(pods) == [GROUP_POD_SELECTOR]
    deployments = kopf.Resource("apps", "v1", "deployments", namespaced=True)
    assert kopf_settings().watching.label_selectors.collect(deployments) == []


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str, Callable[..., Any]]]:
    """Record (decorator, plural, id, function) of every index and event registration."""
    seen: list[tuple[str, str, str, Callable[..., Any]]] = []
    for owner, attr in ((kopf, "index"), (kopf.on, "event")):
        real = getattr(owner, attr)

        def wrapper(*args: Any, _real: Any = real, _attr: str = attr, **kwargs: Any) -> Any:
            decorate = _real(*args, **kwargs)

            def record(fn: Callable[..., Any]) -> Any:
                seen.append((_attr, str(args[-1]), str(kwargs.get("id") or fn.__name__), fn))
                return decorate(fn)

            return record

        monkeypatch.setattr(owner, attr, wrapper)
    return seen


def test_per_event_handlers_are_coroutines_so_kopf_never_hops_to_its_thread_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = _recording(monkeypatch)
    register(
        kopf.OperatorRegistry(),
        Controller(OperatorSettings(workers=1, image_pull_secret_discovery=True)),
        FakeKube,
    )
    plurals = {plural for _, plural, _, _ in seen}
    assert {"dynamographdeployments", "deployments", "statefulsets", "pods", "secrets"} <= plurals
    assert (
        len(seen) >= 24
    )  # DGDs, every child kind, shared accounts, group pods, pull secrets: index + event
    assert [ident for _, _, ident, fn in seen if not inspect.iscoroutinefunction(fn)] == []
    # Every child kind feeds one index, so handlers take it as one typed kwarg.
    child_indexes = {
        ident
        for what, plural, ident, _ in seen
        if what == "index" and plural in {"deployments", "ingresses"}
    }
    assert child_indexes == {"dgd_children"}
