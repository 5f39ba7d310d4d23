"""Child sync planning: which desired objects to apply and which live children to delete.

Pure functions. The hash of each desired manifest is stored on the child as
`nvidia.com/last-applied-hash` (Dynamo's annotation); comparing hashes instead of live fields
means server-defaulted fields never look like drift, so a converged graph costs zero writes.

Edits by someone else are caught through `metadata.generation`: the reconciler remembers the
generation the API server returned for its own last apply (`AppliedRecord`); a live generation
beyond that means another writer changed the spec, and the child is applied again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from dgd_operator.api.constants import ANNOTATION_LAST_APPLIED_HASH

Manifest = dict[str, Any]
# (apiVersion, kind, name) of a child within its DGD's namespace.
ChildKey = tuple[str, str, str]


def child_key(obj: Mapping[str, Any]) -> ChildKey:
    """The identity of a child within one namespace."""
    return (str(obj["apiVersion"]), str(obj["kind"]), str(obj["metadata"]["name"]))


ORJSON_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
"""Sorted keys; every value `json` would turn into text with `default=str` goes to `default`."""

DIGITS = frozenset(b"0123456789")
NUMBER_STARTS = frozenset(b":,[-")
"""What precedes a number in compact JSON (or its minus sign)."""


def has_negative_exponent(encoded: bytes) -> bool:
    """True when `encoded` may hold a number orjson wrote with a negative exponent (`1e-7`).

    Every `e-` between digits is looked at (a regex over the whole text costs more than the
    encoding saved); it is a number when the digits and dots before it follow a delimiter.
    Generated names (`...-4ca0e-1`) pass this way; a string that merely looks like a number
    inside (`"x:1e-7"`) counts as one, which only costs the slower encoder.
    """
    at = encoded.find(b"e-")
    while at != -1:
        if at > 0 and encoded[at - 1] in DIGITS and encoded[at + 2 : at + 3].isdigit():
            start = at - 1
            while start > 0 and (encoded[start - 1] in DIGITS or encoded[start - 1] == 0x2E):
                start -= 1
            if start > 0 and encoded[start - 1] in NUMBER_STARTS:
                return True
        at = encoded.find(b"e-", at + 2)
    return False


def orjson_is_json(encoded: bytes) -> bool:
    """True when orjson's `encoded` is surely what `json.dumps` gives for the same value.

    They differ only on non-ASCII text (`json` escapes it), on floats `json` writes with an
    exponent (|x| < 1e-4, which orjson writes in full down to 1e-6, or >= 1e16) and on NaN and
    infinities (orjson: `null`). A look-alike inside a string only costs the slower encoder.
    """
    if not encoded.isascii() or b"null" in encoded or b"0.0000" in encoded or b"e+" in encoded:
        return False
    return not has_negative_exponent(encoded)


def _not_plain_json(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} is left to json")


def canonical_json(body: Mapping[str, Any]) -> bytes:
    """Key-sorted compact JSON of `body`: exactly `json.dumps(sort_keys=True,
    separators=(",", ":"), default=str)`, whose bytes the hashes on existing children were
    made from, but through orjson (several times faster) wherever it surely gives the same
    bytes (`orjson_is_json`; anything but plain JSON types raises and takes the slow path)."""
    try:
        encoded = orjson.dumps(body, default=_not_plain_json, option=ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: big ints, non-str keys, other types
        encoded = b""
    if encoded and orjson_is_json(encoded):
        return encoded
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def manifest_hash(obj: Mapping[str, Any]) -> str:
    """sha256 of the key-sorted JSON of a desired manifest, ignoring its own hash annotation."""
    body = {k: v for k, v in obj.items() if k != "status"}
    meta = dict(body.get("metadata") or {})
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k != ANNOTATION_LAST_APPLIED_HASH
    }
    meta["annotations"] = annotations
    body["metadata"] = meta
    return hashlib.sha256(canonical_json(body)).hexdigest()


def with_hash(obj: Mapping[str, Any]) -> tuple[Manifest, str]:
    """A copy of `obj` carrying its hash annotation, and the hash.

    Only the top level and `metadata` are copied (the input is never modified); nested
    values are shared, which is safe because manifests are never mutated after building.
    """
    digest = manifest_hash(obj)
    stamped = dict(obj)
    meta = dict(stamped.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), ANNOTATION_LAST_APPLIED_HASH: digest}
    stamped["metadata"] = meta
    return stamped, digest


class DigestMemo:
    """`with_hash` remembered by the identity of the desired manifest it was asked about.

    The build step hands out the same manifest objects while a graph's inputs do not change
    (`steps/build.py`), so a reconcile of an unchanged graph hashes nothing. Only the
    manifests of that build are remembered (a copy made later, e.g. a rollout's resized
    Deployment, is hashed every time), so the memo never grows; it holds them alive, so their
    ids are never reused while remembered, and manifests are never mutated after building,
    so a remembered digest stays right. A memo lives as long as its build.
    """

    def __init__(self, manifests: Iterable[Mapping[str, Any]]) -> None:
        self._built = {id(obj): obj for obj in manifests}
        self._stamped: dict[int, tuple[Manifest, str]] = {}

    def __call__(self, obj: Mapping[str, Any]) -> tuple[Manifest, str]:
        """`with_hash(obj)`, computed once per manifest of the build."""
        if self._built.get(id(obj)) is not obj:
            return with_hash(obj)
        found = self._stamped.get(id(obj))
        if found is None:
            found = self._stamped[id(obj)] = with_hash(obj)
        return found

    def __len__(self) -> int:
        return len(self._stamped)


@dataclass(frozen=True)
class AppliedRecord:
    """What the operator itself last applied to a child: hash, resulting uid and generation."""

    digest: str
    uid: str | None
    generation: int | None


@dataclass(frozen=True)
class ApplyAction:
    """One child to server-side apply, and why (`create`, `update` or `drift`)."""

    manifest: Manifest
    digest: str
    why: str
    live: Mapping[str, Any] | None


@dataclass
class SyncPlan:
    """The outcome of comparing desired children with live ones."""

    apply: list[ApplyAction] = field(default_factory=list)
    delete: list[Mapping[str, Any]] = field(default_factory=list)
    unchanged: int = 0


def needs_apply(
    digest: str, live: Mapping[str, Any] | None, record: AppliedRecord | None
) -> str | None:
    """Why a child with desired hash `digest` must be applied, or None when it is up to date."""
    if live is None:
        # The watch cache may lag behind our own create: trust our record of it.
        if record is not None and record.digest == digest:
            return None
        return "create"
    meta = live.get("metadata") or {}
    live_generation = meta.get("generation")
    if record is not None and record.uid == meta.get("uid"):
        if (
            record.generation is not None
            and live_generation is not None
            and int(live_generation) > record.generation
        ):
            return "drift"
        return None if record.digest == digest else "update"
    live_digest = (meta.get("annotations") or {}).get(ANNOTATION_LAST_APPLIED_HASH)
    return None if live_digest == digest else "update"


def is_owned_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    """True when `obj` has an ownerReference to the object with `owner_uid`."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner_uid for ref in refs)


def plan_sync(
    desired: Iterable[Mapping[str, Any]],
    live: Mapping[ChildKey, Mapping[str, Any]],
    records: Mapping[ChildKey, AppliedRecord],
    owner_uid: str,
    *,
    prune: bool = True,
    stamp: Callable[[Mapping[str, Any]], tuple[Manifest, str]] = with_hash,
) -> SyncPlan:
    """Compare desired children with live ones (found by our labels) and plan the writes.

    Live children that are not desired are deleted only when they carry an ownerReference to
    this DGD's uid, so an object of the same name from an older DGD, or one the user labelled
    by hand, is never touched. `stamp` hashes a desired manifest (a `DigestMemo` saves
    re-hashing the manifests of an unchanged build).
    """
    plan = SyncPlan()
    wanted: set[ChildKey] = set()
    for obj in desired:
        key = child_key(obj)
        wanted.add(key)
        stamped, digest = stamp(obj)
        current = live.get(key)
        why = needs_apply(digest, current, records.get(key))
        if why is None:
            plan.unchanged += 1
        else:
            plan.apply.append(ApplyAction(stamped, digest, why, current))
    if prune:
        for key, obj in sorted(live.items()):
            if key not in wanted and is_owned_by(obj, owner_uid):
                plan.delete.append(obj)
    return plan
