"""Dynamo's "override" merge of user PodSpec / Container fields over operator defaults (§2.6).

Go's mergo with `WithOverride`: every non-empty user field replaces the default, lists are
replaced (not appended), nested objects are merged key by key. Empty values (None, "", [], {})
never override. Numbers and booleans the user wrote do override (they are explicit in YAML,
unlike Go zero values).
"""

from __future__ import annotations

from typing import Any

from dgd_operator.api.tree import json_copy

PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
PROBE_KEYS = ("livenessProbe", "readinessProbe", "startupProbe")


def is_empty(value: Any) -> bool:
    """True for values mergo treats as unset: None, empty string, empty list, empty mapping."""
    return value is None or (isinstance(value, str | list | dict) and len(value) == 0)


def override_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A new dict: `override`'s non-empty fields over `base`, nested mappings merged recursively.

    The result shares nothing with either input (callers edit it further).
    """
    merged = json_copy(base)
    merge_into(merged, override)
    return merged


def merge_into(merged: dict[str, Any], override: dict[str, Any]) -> None:
    """`override_merge` in place, into `merged`: a tree the caller owns (built for this merge,
    or copied once at the top instead of once more at every level of nesting)."""
    for key, value in override.items():
        if is_empty(value):
            continue
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merge_into(current, value)
        else:
            merged[key] = json_copy(value)


def merge_probe(default: dict[str, Any] | None, user: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge a user probe into the default one, as mergo does.

    Deliberate difference from Dynamo: when the user names a handler (httpGet, exec, ...),
    default handlers of another kind are dropped, because a probe with two handlers is
    rejected by the API server.
    """
    if default is None:
        return json_copy(user)
    base = json_copy(default)
    if any(not is_empty(user.get(h)) for h in PROBE_HANDLERS):
        for handler in PROBE_HANDLERS:
            if is_empty(user.get(handler)):
                base.pop(handler, None)
    merge_into(base, user)
    return base
