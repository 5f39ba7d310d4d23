"""`api.tree.json_copy`: equal to `copy.deepcopy` on JSON-shaped values, sharing no container."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from tests.fixtures.catalog import dgd_documents, graph_paths

from dgd_operator.api.tree import json_copy


def containers(value: Any) -> Iterator[Any]:
    """Every dict, list and tuple inside `value`, `value` included."""
    if isinstance(value, dict | list | tuple):
        yield value
        for item in value.values() if isinstance(value, dict) else value:
            yield from containers(item)


@pytest.mark.parametrize("path", graph_paths(), ids=lambda p: p.stem)
def test_copy_of_a_graph_equals_deepcopy_and_shares_no_container(path: Any) -> None:
    for doc in dgd_documents(path):
        copied = json_copy(doc)
        assert copied == copy.deepcopy(doc)
        originals = {id(c) for c in containers(doc)}
        assert not originals & {id(c) for c in containers(copied)}


def test_scalars_and_other_values_are_shared_tuples_and_subclasses_copied() -> None:
    class Tagged(dict[str, Any]):
        pass

    marker = object()
    value = {"a": [1, 2.5, "x", None, True], "t": ({"k": "v"},), "d": Tagged(z=[]), "o": marker}
    copied = json_copy(value)
    assert copied == value
    assert copied["o"] is marker
    assert copied["t"][0] is not value["t"][0] and copied["d"]["z"] is not value["d"]["z"]
    assert type(copied["d"]) is dict
