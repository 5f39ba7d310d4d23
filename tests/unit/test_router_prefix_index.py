"""Prefix index and chained block hashes of the KV router."""

from __future__ import annotations

import pytest

from dgd_runtime.kv.hashing import ROOT_HASH, block_hashes, hash_block
from dgd_runtime.protocol import KvEvent
from dgd_runtime.router.prefix_index import PrefixIndex

pytestmark = pytest.mark.unit


def test_hashes_are_chained_and_only_full_blocks() -> None:
    tokens = list(range(10))
    hs = block_hashes(tokens, 4)
    assert len(hs) == 2
    assert hs[0] == hash_block(ROOT_HASH, tokens[:4])
    assert hs[1] == hash_block(hs[0], tokens[4:8])
    # Same block content after a different prefix hashes differently.
    assert block_hashes([9, 9, 9, 9, *tokens[4:8]], 4)[1] != hs[1]
    assert all(0 <= h < 2**63 for h in hs)
    assert block_hashes([1, 2, 3], 4) == []


def test_hashes_are_stable_across_calls() -> None:
    assert block_hashes(list(range(64)), 16) == block_hashes(list(range(64)), 16)
    assert block_hashes([151_000] * 8, 4)[0] == hash_block(ROOT_HASH, [151_000] * 4)


def test_block_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="block_size"):
        block_hashes([1], 0)


def test_find_matches_counts_leading_blocks_per_worker() -> None:
    idx = PrefixIndex()
    a = block_hashes(list(range(16)), 4)  # 4 blocks
    b = block_hashes(list(range(8)) + [50] * 8, 4)  # shares 2 leading blocks with a
    idx.stored("w1", a)
    idx.stored("w2", b[:3])
    assert idx.find_matches(a) == {"w1": 4, "w2": 2}
    assert idx.find_matches(b) == {"w1": 2, "w2": 3}
    assert idx.find_matches(block_hashes([7] * 8, 4)) == {}
    assert idx.find_matches([]) == {}


def test_a_gap_stops_the_match() -> None:
    idx = PrefixIndex()
    hs = block_hashes(list(range(16)), 4)
    idx.stored("w", [hs[0], hs[2], hs[3]])  # block 1 evicted
    assert idx.find_matches(hs) == {"w": 1}


def test_removed_clear_and_remove_worker() -> None:
    idx = PrefixIndex()
    hs = block_hashes(list(range(12)), 4)
    idx.apply("w1", [KvEvent("stored", hs)])
    idx.apply("w2", [KvEvent("stored", hs[:1])])
    assert len(idx) == 3
    idx.apply("w1", [KvEvent("removed", [hs[2]])])
    assert idx.find_matches(hs) == {"w1": 2, "w2": 1}
    idx.apply("w1", [KvEvent("cleared")])
    assert idx.find_matches(hs) == {"w2": 1}
    assert idx.blocks_of("w1") == 0
    idx.remove_worker("w2")
    assert len(idx) == 0
    assert idx.workers() == []


def test_removing_unknown_things_is_harmless() -> None:
    idx = PrefixIndex()
    idx.removed("nobody", [1, 2])
    idx.clear("nobody")
    idx.remove_worker("nobody")
    idx.stored("w", [1])
    idx.removed("w", [2])
    assert idx.blocks_of("w") == 1


H = block_hashes(list(range(16)), 4)  # 4 chained blocks


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # A prediction counts like a reported block until something says otherwise.
        ([("predict", "w", H, 10.0)], {"w": 4}),
        # Reported leading blocks continue into predicted ones.
        ([("stored", "w", H[:2]), ("predict", "w", H[2:], 10.0)], {"w": 4}),
        # The worker's "stored" confirms it: expiry no longer matters.
        ([("predict", "w", H, 10.0), ("stored", "w", H), ("expire", 11.0)], {"w": 4}),
        # Unconfirmed, it expires (at its expiry, not before).
        ([("predict", "w", H, 10.0), ("expire", 9.9)], {"w": 4}),
        ([("predict", "w", H, 10.0), ("expire", 10.0)], {}),
        # A later prediction of the same block extends it past the first expiry.
        ([("predict", "w", H, 10.0), ("predict", "w", H, 20.0), ("expire", 15.0)], {"w": 4}),
        # "removed" contradicts it (events report what happened after the routing).
        ([("predict", "w", H, 10.0), ("removed", "w", H[1:2])], {"w": 1}),
        # A cache "cleared" drops only what was reported: predicted requests have not run yet.
        ([("stored", "w", H[:2]), ("predict", "v", H, 10.0), ("cleared", "w")], {"v": 4}),
        ([("predict", "w", H, 10.0), ("cleared", "w")], {"w": 4}),
        # Forgetting a worker forgets its predictions; others keep theirs.
        ([("predict", "w", H, 10.0), ("predict", "v", H[:3], 10.0), ("gone", "w")], {"v": 3}),
    ],
)
def test_predicted_blocks_until_events_or_expiry(
    steps: list[tuple[object, ...]], expected: dict[str, int]
) -> None:
    idx = PrefixIndex()
    for step in steps:
        match step:
            case ("predict", str(w), list(hs), float(expires)):
                idx.predict(w, hs, expires)
            case ("stored" | "removed" as kind, str(w), list(hs)):
                idx.apply(w, [KvEvent(kind, hs)])
            case ("cleared", str(w)):
                idx.apply(w, [KvEvent("cleared")])
            case ("gone", str(w)):
                idx.remove_worker(w)
            case ("expire", float(now)):
                idx.expire(now)
            case _:
                raise AssertionError(step)
    assert idx.find_matches(H) == expected


def test_a_reported_block_is_not_predicted_again() -> None:
    idx = PrefixIndex()
    idx.stored("w", H[:2])
    idx.predict("w", H, 10.0)
    assert idx.predicted("w") == 2
    idx.stored("w", H[2:])
    assert idx.predicted("w") == 0
    assert idx.blocks_of("w") == 4
