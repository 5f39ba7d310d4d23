"""What changed in one reconcile, told as Events (pure).

One Event per kind of change (created, updated, scaled, deleted), each naming every child it
concerns, instead of one Event per child: at scale an Event per object is one more write.
A child whose only change is `spec.replicas` is "scaled", not "updated".
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dgd_operator.api.constants import (
    ANNOTATION_LAST_APPLIED_HASH,
    EVENT_CREATED,
    EVENT_DELETED,
    EVENT_SCALED,
    EVENT_UPDATED,
)
from dgd_operator.reconcile.readiness import WORKLOAD_KINDS
from dgd_operator.reconcile.sync import ApplyAction, manifest_hash


def scale_change(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> str | None:
    """`"<have> -> <want> replicas"` when a live workload's replica count changes, else None."""
    if live is None or desired.get("kind") not in WORKLOAD_KINDS:
        return None
    want = (desired.get("spec") or {}).get("replicas", 1)
    have = (live.get("spec") or {}).get("replicas", 1)
    return None if want == have else f"{have} -> {want} replicas"


def only_replicas_changed(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """True when the desired object differs from what we last applied only in `spec.replicas`."""
    if live is None:
        return False
    recorded = ((live.get("metadata") or {}).get("annotations") or {}).get(
        ANNOTATION_LAST_APPLIED_HASH
    )
    probe = copy.deepcopy(dict(desired))
    probe.setdefault("spec", {})["replicas"] = (live.get("spec") or {}).get("replicas", 1)
    return recorded == manifest_hash(probe)


def change_notices(applied: Sequence[ApplyAction], deleted: Iterable[str]) -> list[tuple[str, str]]:
    """(Event reason, message) for the children applied (by why) and deleted (`Kind/name`)."""
    created: list[str] = []
    updated: list[str] = []
    scaled: list[str] = []
    for action in applied:
        label = f"{action.manifest['kind']}/{action.manifest['metadata']['name']}"
        if action.why == "create":
            created.append(label)
            continue
        change = scale_change(action.manifest, action.live)
        if change is not None:
            scaled.append(f"{label} {change}")
        if change is None or not only_replicas_changed(action.manifest, action.live):
            cause = "edited outside the operator" if action.why == "drift" else "spec changed"
            updated.append(f"{label} ({cause})")
    return [
        (reason, f"{verb} " + ", ".join(labels))
        for reason, verb, labels in (
            (EVENT_CREATED, "created", created),
            (EVENT_UPDATED, "updated", updated),
            (EVENT_SCALED, "scaled", scaled),
            (EVENT_DELETED, "deleted", list(deleted)),
        )
        if labels
    ]
