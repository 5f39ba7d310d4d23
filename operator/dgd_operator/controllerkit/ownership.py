"""Field ownership of objects created with a POST and changed later with server-side apply.

Creating a missing object with a POST costs the API server far less than creating it with
server-side apply, but the two record ownership differently: a POST under field manager `m`
records every field it set under the entry (`m`, operation `Update`), an apply under
(`m`, operation `Apply`). For the API server those are two owners, so a field that a later
apply leaves out would stay on the object, still owned by the `Update` entry.

`apply_upgrade_patch` closes that gap the way kubectl's client-side to server-side upgrade
does: before the first apply that changes such an object, one JSON patch folds the manager's
`Update` entries into its `Apply` entry. A patch that changes only `managedFields` records no
owner of its own and does not touch `metadata.generation`. After it, the apply owns exactly
what it sends, as if the object had been created by server-side apply.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

APPLY = "Apply"
UPDATE = "Update"


def union_fields(left: Mapping[str, Any], right: Mapping[str, Any]) -> dict[str, Any]:
    """The union of two `FieldsV1` sets (nested dicts of `f:`/`k:`/`v:`/`i:` keys and `.`)."""
    merged = copy.deepcopy(dict(left))
    for key, value in right.items():
        mine = merged.get(key)
        if isinstance(mine, Mapping) and isinstance(value, Mapping):
            merged[key] = union_fields(mine, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_upgrade_patch(live: Mapping[str, Any], manager: str) -> list[dict[str, Any]] | None:
    """JSON patch making `manager`'s `Update` ownership of `live` part of its `Apply` entry.

    None when `manager` owns no field of the main resource through an `Update` entry (the
    object was created or last changed by server-side apply: nothing to fold). The patch
    carries the live `resourceVersion`, a precondition: it fails with a conflict instead of
    overwriting ownership that changed meanwhile.
    """
    meta = live.get("metadata") or {}
    entries: list[Mapping[str, Any]] = list(meta.get("managedFields") or [])

    def ours(entry: Mapping[str, Any], operation: str) -> bool:
        return (
            entry.get("manager") == manager
            and entry.get("operation") == operation
            and not entry.get("subresource")
            and entry.get("fieldsType", "FieldsV1") == "FieldsV1"
        )

    updates = [e for e in entries if ours(e, UPDATE)]
    if not updates:
        return None
    applied = next((e for e in entries if ours(e, APPLY)), None)
    fields: dict[str, Any] = dict((applied or {}).get("fieldsV1") or {})
    for entry in updates:
        fields = union_fields(fields, entry.get("fieldsV1") or {})
    merged: dict[str, Any] = {
        "manager": manager,
        "operation": APPLY,
        "apiVersion": (applied or updates[0]).get("apiVersion") or live.get("apiVersion"),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }
    when = (applied or updates[-1]).get("time")
    if when:
        merged["time"] = when
    kept: list[dict[str, Any]] = []
    for entry in entries:
        if entry is applied:
            kept.append(merged)
        elif not ours(entry, UPDATE):
            kept.append(dict(entry))
    if applied is None:
        kept.append(merged)
    return [
        {
            "op": "replace",
            "path": "/metadata/resourceVersion",
            "value": meta.get("resourceVersion"),
        },
        {"op": "replace", "path": "/metadata/managedFields", "value": kept},
    ]
