"""Folding a create's Update ownership into the apply entry (the pure part; the API server's
side is in tests/integration/test_create_then_apply.py)."""

from __future__ import annotations

from typing import Any

import pytest

from dgd_operator.controllerkit.ownership import apply_upgrade_patch, union_fields

pytestmark = pytest.mark.unit


def entry(manager: str, operation: str, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": "v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
        "time": "2026-12-06T09:00:00Z",
        **extra,
    }


def test_union_of_field_sets_is_deep() -> None:
    left = {"f:metadata": {"f:labels": {".": {}, "f:a": {}}}}
    right = {"f:metadata": {"f:labels": {"f:b": {}}}, "f:spec": {"f:ports": {}}}
    assert union_fields(left, right) == {
        "f:metadata": {"f:labels": {".": {}, "f:a": {}, "f:b": {}}},
        "f:spec": {"f:ports": {}},
    }


def test_nothing_to_fold_when_we_never_created_with_a_post() -> None:
    live = {"metadata": {"resourceVersion": "5", "managedFields": [entry("me", "Apply", {})]}}
    assert apply_upgrade_patch(live, "me") is None
    other = {"metadata": {"managedFields": [entry("kubectl", "Update", {"f:a": {}})]}}
    assert apply_upgrade_patch(other, "me") is None


def test_update_entry_becomes_the_apply_entry_and_others_are_kept() -> None:
    status = entry("me", "Update", {"f:status": {}}, subresource="status")
    theirs = entry("kubectl", "Update", {"f:spec": {"f:x": {}}})
    live = {
        "metadata": {
            "resourceVersion": "7",
            "managedFields": [entry("me", "Update", {"f:spec": {"f:a": {}}}), theirs, status],
        }
    }
    patch = apply_upgrade_patch(live, "me")
    assert patch is not None
    assert patch[0] == {"op": "replace", "path": "/metadata/resourceVersion", "value": "7"}
    fields = patch[1]["value"]
    assert theirs in fields and status in fields  # other owners and subresources untouched
    (ours,) = [f for f in fields if f["manager"] == "me" and not f.get("subresource")]
    assert ours["operation"] == "Apply" and ours["fieldsV1"] == {"f:spec": {"f:a": {}}}


def test_update_and_apply_entries_merge_into_one() -> None:
    live = {
        "metadata": {
            "resourceVersion": "7",
            "managedFields": [
                entry("me", "Apply", {"f:spec": {"f:b": {}}}),
                entry("me", "Update", {"f:spec": {"f:a": {}}}),
            ],
        }
    }
    patch = apply_upgrade_patch(live, "me")
    assert patch is not None
    (ours,) = patch[1]["value"]
    assert ours["operation"] == "Apply"
    assert ours["fieldsV1"] == {"f:spec": {"f:a": {}, "f:b": {}}}
