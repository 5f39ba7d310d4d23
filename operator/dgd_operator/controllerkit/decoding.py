"""Decoders that build only the fields a watch cache keeps (typed msgspec structs).

Why: a watched Deployment or Pod arrives as 8-10 KB of JSON, most of it the pod template's
`spec` and `metadata.managedFields`, which the cache drops right after decoding. A generic JSON
decoder builds every one of those dicts and strings first; in the operator at scale that was
the largest single item of its CPU (issue 16). A msgspec decoder typed with a struct that
names only the kept fields parses the rest without building it.

A `Shape` wraps one object struct and decodes the two envelopes an informer reads: a watch
event (`{"type", "object"}`) and a LIST page (`{"metadata", "items"}`). What it returns is
plain JSON-shaped data, as a generic decoder would return for the same bytes minus the fields
the struct leaves out: a field absent from the bytes stays absent (struct fields default to
`UNSET`), and `null` stays `None`. A watch `ERROR` event carries a `Status`, not the watched
kind, so its object is decoded generically.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from dgd_operator.controllerkit.kubeapi import Manifest

ObjectT = TypeVar("ObjectT", bound=msgspec.Struct)
Decode = Callable[[bytes], Manifest]
"""Turns the bytes of one LIST page or one watch event into JSON-shaped data."""


class Shape(Generic[ObjectT]):
    """Decodes watch events and LIST pages of one kind into the fields of `object_type`."""

    def __init__(self, object_type: type[ObjectT]) -> None:
        self.object_type = object_type
        name = object_type.__name__
        kept: Any = object_type | UnsetType
        self._event = msgspec.json.Decoder(
            msgspec.defstruct(f"{name}Event", [("type", str, ""), ("object", kept, UNSET)])
        )
        self._page = msgspec.json.Decoder(
            msgspec.defstruct(
                f"{name}List", [("metadata", Any, UNSET), ("items", list[kept], UNSET)]
            )
        )
        self._whole = msgspec.json.Decoder()

    def __repr__(self) -> str:
        return f"Shape({self.object_type.__name__})"

    def event(self, raw: bytes) -> Manifest:
        """One watch event: `{"type": ..., "object": ...}`.

        An `ERROR` event (a `Status` in place of the object) is decoded whole, as is any event
        whose object does not fit the struct's types.
        """
        try:
            event: Any = self._event.decode(raw)
        except msgspec.ValidationError:
            whole: Manifest = self._whole.decode(raw)
            return whole
        if event.type == "ERROR":
            error: Manifest = self._whole.decode(raw)
            return error
        decoded: Manifest = msgspec.to_builtins(event)
        return decoded

    def page(self, raw: bytes) -> Manifest:
        """One LIST page: `{"metadata": ..., "items": [...]}` (decoded whole when an object
        does not fit the struct's types)."""
        try:
            decoded = self._page.decode(raw)
        except msgspec.ValidationError:
            whole: Manifest = self._whole.decode(raw)
            return whole
        page: Manifest = msgspec.to_builtins(decoded)
        return page
