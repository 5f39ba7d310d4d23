"""Copies of JSON-shaped values (decoded API objects, YAML documents, manifests in the making):
`json_copy` for a copy to change, `compact` for a copy to keep in a cache.

`copy.deepcopy` spends most of its time on its memo and on dispatching by type; for the values
the operator copies (dicts, lists, strings, numbers, booleans, None) a plain recursive copy
gives an equal value several times faster. The one difference: a dict or list reachable twice
is copied twice instead of once, which for a tree that is later printed is what we want
anyway (YAML would otherwise print an anchor).
"""

from __future__ import annotations

import sys
from typing import Any, TypeVar

T = TypeVar("T")

_SCALARS = frozenset({str, int, float, bool, type(None)})
"""Immutable leaf types: returned as they are, without a call per leaf."""


def json_copy(value: T) -> T:
    """A copy of `value` sharing no dict, list or tuple with it; anything else is shared.

    Dicts (of any subclass) come back as plain dicts in the same key order; the scalars a
    decoded object holds are immutable, so sharing them is safe.
    """
    copied: Any
    source: Any = value
    if isinstance(source, dict):
        copied = {k: v if type(v) in _SCALARS else json_copy(v) for k, v in source.items()}
    elif isinstance(source, list):
        copied = [v if type(v) in _SCALARS else json_copy(v) for v in source]
    elif type(source) is tuple:
        copied = tuple(json_copy(v) for v in source)
    else:
        return value
    result: T = copied
    return result


def compact(value: Any, like: Any = None) -> Any:
    """A fresh copy of a decoded JSON tree with every string interned.

    For what the watch cache's indexes keep of a watched object. Thousands of cached objects
    repeat the same keys and values (label keys, the managed-by value, condition types and
    reasons, owner API versions), and the decoder gives each object its own copies. The copy
    also moves the kept parts out of the decoded LIST page or watch event: kept parts that
    share the page's dicts pin the allocator's memory of the whole page long after the rest of
    it is freed.

    `like` is what the cache kept of the object's previous version (itself compacted): every
    subtree equal to the one at the same place in `like` is taken from `like` instead of being
    copied. A watched object changes a few fields per event (a Deployment's status while it
    rolls out), so most of it is compared in C instead of rebuilt in Python. Equality is
    JSON's but for one case: inside an equal subtree `1`, `1.0` and `true` are not told apart,
    which a Kubernetes object never shows, since its schema fixes each field's type.
    """
    if like is not None and type(value) is type(like) and value == like:
        return like
    if isinstance(value, str):
        return sys.intern(value) if type(value) is str else value
    if isinstance(value, dict):
        before = like if isinstance(like, dict) else {}
        return {
            (sys.intern(k) if type(k) is str else k): compact(v, before.get(k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        if isinstance(like, list) and len(like) == len(value):
            return [compact(v, old) for v, old in zip(value, like, strict=True)]
        return [compact(v) for v in value]
    return value
