"""Unknown fields, as the API server prunes them, and documents minus their broken fields."""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from dgd_operator.api import k8s
from dgd_operator.api.models import DynamoGraphDeployment, ExtraPodSpec, ObjectMeta
from dgd_operator.api.tree import json_copy
from dgd_operator.api.validation.errors import join

# Hints for unknown fields people really write.
_UNKNOWN_FIELD_HINTS = {
    ("ServiceSpec", "pvc"): (
        "the obsolete per-service `pvc` block; declare the claim in spec.pvcs and mount it "
        "with volumeMounts"
    ),
    ("DynamoGraphDeploymentSpec", "components"): (
        "a v1beta1 field; v1alpha1 uses spec.services (a map)"
    ),
}


def prune(value: Any, annotation: Any, path: str, findings: k8s.Findings) -> Any:
    """Return `value` without the fields the API server would prune, recording each one.

    Embedded Kubernetes objects are checked against their real schemas on the way.
    """
    kind, inner, fields = _shape(annotation)
    if kind == "model":
        model: type[BaseModel] = inner
        if not isinstance(value, Mapping):
            return value  # pydantic reports the wrong type
        if model is ExtraPodSpec:
            return k8s.check(value, k8s.cached_extra_pod_spec_schema(), path, findings)
        if model is ObjectMeta:
            return dict(value)  # the API server owns metadata
        kept: dict[str, Any] = {}
        for key, item in value.items():
            info = fields.get(key) if isinstance(key, str) else None
            child = join(path, key)
            if info is None:
                findings.warnings.append((child, _unknown_field_message(model, key, fields)))
                continue
            embedded = k8s.EMBEDDED_FIELDS.get((model.__name__, key))
            if embedded is not None:
                name, is_list = embedded
                if isinstance(item, list if is_list else Mapping):
                    item = k8s.check(item, k8s.cached_field_schema(name, is_list), child, findings)
                kept[key] = item
                continue
            kept[key] = prune(item, info.annotation, child, findings)
        return kept
    if kind == "dict" and isinstance(value, Mapping):
        return {k: prune(v, inner, join(path, k), findings) for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [prune(v, inner, f"{path}[{i}]", findings) for i, v in enumerate(value)]
    return value


_Shape = tuple[str, Any, dict[str, FieldInfo]]
_SHAPES: dict[int, tuple[Any, _Shape]] = {}
"""id(annotation) -> (the annotation, kept alive so its id stays its own; its shape)."""


def _shape(annotation: Any) -> _Shape:
    """What `prune` does with a value of `annotation`: ("model", model, fields by wire name),
    ("dict", value annotation, {}), ("list", item annotation, {}) or ("leaf", None, {}).

    Worked out once per annotation: the typing introspection cost more than the pruning.
    """
    found = _SHAPES.get(id(annotation))
    if found is not None and found[0] is annotation:
        return found[1]
    model = _model_of(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    shape: _Shape
    if model is not None:
        fields = {(info.alias or name): info for name, info in model.model_fields.items()}
        shape = ("model", model, fields)
    elif origin is dict and len(args) == 2:
        shape = ("dict", args[1], {})
    elif origin is list and args:
        shape = ("list", args[0], {})
    else:
        shape = ("leaf", None, {})
    _SHAPES[id(annotation)] = (annotation, shape)
    return shape


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation denotes (through Optional and Annotated), if any."""
    for candidate in _unwrap(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _unwrap(annotation: Any) -> Iterator[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        yield from _unwrap(get_args(annotation)[0])
    elif origin is Union or origin is types.UnionType:
        for arg in get_args(annotation):
            if arg is not type(None):
                yield from _unwrap(arg)
    else:
        yield annotation


def _unknown_field_message(model: type[BaseModel], key: object, fields: Mapping[str, Any]) -> str:
    message = k8s.UNKNOWN_FIELD
    hint = _UNKNOWN_FIELD_HINTS.get((model.__name__, str(key)))
    if hint:
        return f"{message} ({hint})"
    close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.75)
    if close:
        return f"{message} (did you mean {close[0]!r}?)"
    return message


def without_errors(doc: dict[str, Any], exc: ValidationError) -> DynamoGraphDeployment | None:
    """The model of `doc` with every field pydantic rejected removed, if that parses."""
    current: Any = json_copy(doc)
    for _attempt in range(4):
        locs = []
        for error in exc.errors(include_url=False):
            loc = [part for part in error["loc"] if part != "[key]"]
            if error["type"] == "missing":
                loc = loc[:-1]  # drop the object that lacks a required field
            if len(loc) < 2:
                return None  # metadata or spec itself is broken: nothing sensible to check
            locs.append(loc)
        # Deepest and highest list indices first, so earlier deletions do not shift later ones.
        for loc in sorted(
            locs, key=lambda parts: [(isinstance(p, str), p) for p in parts], reverse=True
        ):
            _delete(current, loc)
        try:
            return DynamoGraphDeployment.model_validate(current)
        except ValidationError as again:
            exc = again
    return None


def _delete(doc: Any, loc: list[int | str]) -> None:
    parent = doc
    for part in loc[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return
    last = loc[-1]
    if isinstance(parent, dict):
        parent.pop(last, None)
    elif isinstance(parent, list) and isinstance(last, int) and 0 <= last < len(parent):
        del parent[last]
