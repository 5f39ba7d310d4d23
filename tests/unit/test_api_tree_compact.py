"""`tree.compact`: what an index keeps is an equal, fresh copy with interned strings."""

from __future__ import annotations

import json
import sys
from typing import Any

from dgd_operator.api.tree import compact


def _decoded(name: str) -> Any:
    # Each decode gives its own string objects, as two watch events or list pages do.
    text = json.dumps(
        {
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "dgd-operator"}},
            "spec": {"replicas": 2, "paused": False, "ports": [{"port": 80, "name": None}]},
            "status": {"conditions": [{"type": "Available", "status": "True"}], "ratio": 0.5},
        }
    )
    decoded: Any = json.loads(text)
    return decoded


def test_the_copy_is_equal_and_shares_nothing_mutable_with_the_original() -> None:
    original = _decoded("a")
    kept = compact(original)
    assert kept == original
    assert kept is not original
    assert kept["metadata"] is not original["metadata"]
    assert kept["spec"]["ports"] is not original["spec"]["ports"]
    assert kept["spec"]["ports"][0] is not original["spec"]["ports"][0]
    original["spec"]["ports"][0]["port"] = 81
    assert kept["spec"]["ports"][0]["port"] == 80


def test_equal_strings_of_separately_decoded_objects_become_one_object() -> None:
    first, second = compact(_decoded("a")), compact(_decoded("b"))
    key = "app.kubernetes.io/managed-by"
    (first_key,) = first["metadata"]["labels"]
    (second_key,) = second["metadata"]["labels"]
    assert first_key is second_key is sys.intern(key)
    assert first["metadata"]["labels"][key] is second["metadata"]["labels"][key]
    first_condition = first["status"]["conditions"][0]
    assert first_condition["type"] is second["status"]["conditions"][0]["type"]


def test_scalars_keep_their_types() -> None:
    kept = compact(_decoded("a"))
    assert kept["spec"]["paused"] is False and kept["spec"]["ports"][0]["name"] is None
    assert type(kept["spec"]["replicas"]) is int and type(kept["status"]["ratio"]) is float
