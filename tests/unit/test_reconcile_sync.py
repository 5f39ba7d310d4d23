"""Child sync planning: hashes, drift detection and pruning."""

from __future__ import annotations

from typing import Any

import pytest

from dgd_operator.reconcile.constants import ANNOTATION_LAST_APPLIED_HASH
from dgd_operator.reconcile.sync import (
    AppliedRecord,
    child_key,
    manifest_hash,
    needs_apply,
    plan_sync,
    with_hash,
)

pytestmark = pytest.mark.unit

OWNER = "uid-dgd"


def _deployment(name: str = "g-worker", replicas: int = 1, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "ns", "labels": {"a": "b"}, **meta},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "main"}]}}},
    }


def _live(desired: dict[str, Any], *, uid: str = "c1", generation: int = 1, owner: str = OWNER) -> dict[str, Any]:
    stamped, _ = with_hash(desired)
    stamped["metadata"].update(uid=uid, generation=generation, ownerReferences=[{"uid": owner}])
    stamped["status"] = {"replicas": 1}
    return stamped


def test_hash_ignores_own_annotation_and_status_but_not_spec() -> None:
    base = _deployment()
    stamped, digest = with_hash(base)
    assert stamped["metadata"]["annotations"][ANNOTATION_LAST_APPLIED_HASH] == digest
    assert manifest_hash(stamped) == digest
    assert manifest_hash({**stamped, "status": {"x": 1}}) == digest
    assert manifest_hash(_deployment(replicas=2)) != digest
    assert "annotations" not in base["metadata"], "with_hash must not mutate its input"


@pytest.mark.parametrize(
    ("live_state", "record", "expected"),
    [
        pytest.param("absent", None, "create", id="missing child is created"),
        pytest.param("absent", "same", None, id="own create not yet in the watch cache"),
        pytest.param("same", None, None, id="converged after operator restart"),
        pytest.param("other", None, "update", id="spec changed"),
        pytest.param("same", "same-gen2", None, id="cache older than our apply"),
        pytest.param("same-gen3", "same-gen2", "drift", id="someone else edited the spec"),
        pytest.param("other", "same", None, id="stale cache, record says applied"),
    ],
)
def test_needs_apply(live_state: str, record: str | None, expected: str | None) -> None:
    desired = _deployment()
    _, digest = with_hash(desired)
    live: dict[str, Any] | None = None
    if live_state.startswith("same"):
        live = _live(desired, generation=3 if live_state.endswith("gen3") else 1)
    elif live_state == "other":
        live = _live(_deployment(replicas=5))
    rec = None
    if record is not None:
        rec = AppliedRecord(digest, "c1", 2 if record.endswith("gen2") else 1)
    assert needs_apply(digest, live, rec) == expected


def test_plan_sync_applies_changes_and_prunes_only_owned_children() -> None:
    keep = _deployment("g-frontend")
    change = _deployment("g-worker", replicas=2)
    live = {
        child_key(keep): _live(keep),
        child_key(change): _live(_deployment("g-worker", replicas=1)),
        ("v1", "Service", "g-old"): {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "g-old", "ownerReferences": [{"uid": OWNER}]}},
        ("v1", "Service", "foreign"): {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "foreign", "ownerReferences": [{"uid": "other"}]}},
    }
    plan = plan_sync([keep, change], live, {}, OWNER)
    assert plan.unchanged == 1
    assert [(a.manifest["metadata"]["name"], a.why) for a in plan.apply] == [("g-worker", "update")]
    assert [o["metadata"]["name"] for o in plan.delete] == ["g-old"]
    assert not plan_sync([keep, change], live, {}, OWNER, prune=False).delete
