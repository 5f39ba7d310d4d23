"""A child created with a POST and changed with server-side apply ends up owned exactly as one
created and changed by server-side apply alone (issue 16: POST is the cheap create)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dgd_operator.api.constants import MANAGED_BY
from dgd_operator.controllerkit.kube import KubeClient
from dgd_operator.controllerkit.kubeapi import ConflictError, Manifest
from dgd_operator.controllerkit.ownership import apply_upgrade_patch
from dgd_operator.dev.controlplane import ControlPlane
from dgd_operator.handlers import slim
from dgd_operator.main import connect, load_credentials
from dgd_operator.reconcile.resources import KINDS
from dgd_operator.reconcile.steps.children import fold_ownership

pytestmark = pytest.mark.integration


def _config_map(namespace: str, name: str, *, second: bool) -> Manifest:
    labels = {"a": "1", **({"b": "2"} if second else {})}
    data = {"x": "1", **({"y": "2"} if second else {})}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": data,
    }


def _deployment(namespace: str, name: str, *, second: bool) -> Manifest:
    env = [{"name": "A", "value": "1"}, *([{"name": "B", "value": "2"}] if second else [])]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "busybox", "env": env}]},
            },
        },
    }


def _ownership(obj: Manifest) -> list[tuple[Any, ...]]:
    """Our entries (the controllers' status entries come and go on their own clock)."""
    return sorted(
        (e["manager"], e["operation"], e.get("subresource", ""), repr(e.get("fieldsV1")))
        for e in obj["metadata"]["managedFields"]
        if e["manager"] == MANAGED_BY
    )


@pytest.mark.parametrize("make", [_config_map, _deployment], ids=["configmap", "deployment"])
async def test_post_then_apply_owns_fields_like_apply_alone(
    control_plane: ControlPlane, namespace: str, monkeypatch: pytest.MonkeyPatch, make: Any
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    client = connect()
    try:
        # Created and changed by apply alone (the field left out the second time goes away).
        await client.apply(make(namespace, "pure", second=True))
        await client.apply(make(namespace, "pure", second=False))
        # Created with a POST, then the same change: fold our ownership, then apply.
        await client.create(make(namespace, "posted", second=True))
        kind = make(namespace, "x", second=False)
        for _ in range(10):
            # The deployment controller may write the object (its revision annotation) between
            # our read and the fold: the fold then conflicts and is redone on a fresh read, as
            # the reconcile does.
            live = await client.get(kind["apiVersion"], kind["kind"], namespace, "posted")
            assert live is not None
            patch = apply_upgrade_patch(live, MANAGED_BY)
            assert patch is not None
            try:
                folded = await client.json_patch(
                    kind["apiVersion"], kind["kind"], namespace, "posted", patch
                )
                break
            except ConflictError:
                continue
        else:
            pytest.fail("the fold conflicted 10 times in a row")
        assert folded["metadata"].get("generation") == live["metadata"].get("generation")
        assert apply_upgrade_patch(folded, MANAGED_BY) is None  # nothing left to fold
        await client.apply(make(namespace, "posted", second=False))

        pure = await client.get(kind["apiVersion"], kind["kind"], namespace, "pure")
        posted = await client.get(kind["apiVersion"], kind["kind"], namespace, "posted")
        assert pure is not None and posted is not None
        assert _ownership(posted) == _ownership(pure)
        for obj in (pure, posted):
            body = copy.deepcopy(obj)
            if kind["kind"] == "ConfigMap":
                assert body["data"] == {"x": "1"} and body["metadata"]["labels"] == {"a": "1"}
            else:
                container = body["spec"]["template"]["spec"]["containers"][0]
                assert container["env"] == [{"name": "A", "value": "1"}]

        # Folding against a stale read is refused as a conflict, never applied blindly.
        with pytest.raises(ConflictError):
            await client.json_patch(kind["apiVersion"], kind["kind"], namespace, "posted", patch)
    finally:
        await client.close()


async def test_the_fold_keeps_other_managers_ownership(
    control_plane: ControlPlane, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reconcile's fold reads the object afresh: its watch cache keeps only our entries
    (`handlers.slim`), and a fold built from the cache replaced the whole list, erasing the
    ownership of everyone else (here a user's `kubectl label`)."""
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    ours = connect()
    theirs = KubeClient(load_credentials(), field_manager="kubectl-label", kinds=KINDS)
    try:
        created = await ours.create(_config_map(namespace, "shared", second=True))
        await theirs.merge_patch(
            "v1", "ConfigMap", namespace, "shared", {"metadata": {"labels": {"team": "blue"}}}
        )
        cached = slim(created)  # what the reconcile sees: only our Update entry
        assert apply_upgrade_patch(cached, MANAGED_BY) is not None
        await fold_ownership(ours, _config_map(namespace, "shared", second=False), namespace)
        await ours.apply(_config_map(namespace, "shared", second=False))

        live = await ours.get("v1", "ConfigMap", namespace, "shared")
        assert live is not None
        managers = {(e["manager"], e["operation"]) for e in live["metadata"]["managedFields"]}
        assert managers == {(MANAGED_BY, "Apply"), ("kubectl-label", "Update")}
        # Our left-out fields went away; the user's label stayed, still theirs.
        assert live["data"] == {"x": "1"}
        assert live["metadata"]["labels"] == {"a": "1", "team": "blue"}
    finally:
        await ours.close()
        await theirs.close()
