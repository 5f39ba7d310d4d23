"""`sync.canonical_json` gives exactly the bytes of `json.dumps(sort_keys=True, ...)`: the
hashes on children written by earlier versions must still match, or an upgrade rewrites them."""

from __future__ import annotations

import datetime
import json
import math
import random
from typing import Any

import orjson
import pytest
from tests.fixtures.catalog import dgd_documents, graph_paths

from dgd_operator.api.validation import validate_dgd
from dgd_operator.builders.graph import build_graph
from dgd_operator.builders.options import BuildOptions
from dgd_operator.reconcile.sync import ORJSON_OPTIONS, canonical_json, orjson_is_json

pytestmark = pytest.mark.unit


def reference(value: Any) -> bytes:
    """The encoding the hashes were always made with."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [True, False, None, "x"]},
        {"f": [0.1, 1 / 3, 100.0, -0.0, 1e-4, 9.9e-5, 1e-5, 2.5e-7, 1e15, 1e16, 1e22, 5e-324]},
        {"nan": math.nan, "inf": math.inf, "minus": -math.inf},
        {"text": "naïve ✓", "ключ": "v"},
        {"big": 2**70, "neg": -(2**64)},
        {1: "int key", 2: "another"},
        {"when": datetime.datetime(2026, 12, 6, 10, 0, tzinfo=datetime.UTC)},
        {"tuple": (1, "two"), "quoted": 'say "hi"\n\t\\', "ctl": "\x01"},
        {"looks": ":1e5", "like": ",0.00001", "null": "null"},
    ],
    ids=[
        "plain",
        "floats",
        "non-finite",
        "non-ascii",
        "big-ints",
        "int-keys",
        "datetime",
        "escapes",
        "strings-like-numbers",
    ],
)
def test_same_bytes_as_json_dumps(value: dict[Any, Any]) -> None:
    assert canonical_json(value) == reference(value)


def test_same_bytes_for_random_floats() -> None:
    rng = random.Random(16)
    values = [rng.uniform(-1e6, 1e6) for _ in range(2000)]
    values += [rng.choice((1, -1)) * 10 ** rng.uniform(-12, 25) for _ in range(2000)]
    for value in values:
        assert canonical_json({"v": [value]}) == reference({"v": [value]}), value


@pytest.mark.parametrize("path", graph_paths(), ids=lambda p: p.stem)
def test_same_bytes_for_every_child_of_our_graphs(path: Any) -> None:
    for doc in dgd_documents(path):
        doc.setdefault("metadata", {}).setdefault("namespace", "ns")
        graph = validate_dgd(doc, images=False).dgd
        assert graph is not None
        for obj in build_graph(graph, "ns", BuildOptions()):
            assert canonical_json(obj) == reference(obj)


@pytest.mark.parametrize(
    ("value", "fast"),
    [
        ({"name": "bench-op-4ca0e-dgd-1", "hash": "x1e-5", "image": "runtime:0.8.0"}, True),
        ({"replicas": 3, "ratio": 0.5}, True),
        ({"small": 1e-7}, False),
        ({"small": [2.5e-17]}, False),
        ({"small": -1e-20}, False),
        ({"big": 1e16}, False),
        ({"tiny": 1e-5}, False),
        ({"unset": None}, False),
    ],
)
def test_orjson_is_used_only_where_it_is_sure(value: dict[str, Any], fast: bool) -> None:
    assert orjson_is_json(orjson.dumps(value, option=ORJSON_OPTIONS)) is fast
    assert canonical_json(value) == reference(value)
