"""vLLM KV events -> the runtime's chained-hash KV events, and the ZMQ address rules.

The translator dispatches on vLLM's event class names, so the stand-ins below carry those names
and fields; the real classes are exercised by the engine tier (tests/engine).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from dgd_runtime.engines.vllm import KvEventTranslator, subscriber_address
from dgd_runtime.kv.hashing import ROOT_HASH, block_hashes
from dgd_runtime.protocol import KvEvent

pytestmark = pytest.mark.unit


@dataclass
class BlockStored:
    block_hashes: list[bytes]
    parent_block_hash: bytes | None
    token_ids: list[int]
    block_size: int


@dataclass
class BlockRemoved:
    block_hashes: list[bytes]


@dataclass
class AllBlocksCleared:
    unused: list[int] = field(default_factory=list)


PROMPT = list(range(100, 164))  # 64 tokens = 4 blocks of 16


def test_stored_blocks_get_the_routers_hashes_chained_on_their_parent() -> None:
    tr = KvEventTranslator()
    first = tr.translate([BlockStored([b"a", b"b"], None, PROMPT[:32], 16)])
    second = tr.translate([BlockStored([b"c", b"d"], b"b", PROMPT[32:], 16)])
    expected = block_hashes(PROMPT, 16)
    assert first == [KvEvent("stored", expected[:2], None)]
    assert second == [KvEvent("stored", expected[2:], expected[1])]
    assert sorted(tr.cached()) == sorted(expected)


def test_removed_and_cleared() -> None:
    tr = KvEventTranslator()
    tr.translate([BlockStored([b"a", b"b"], None, PROMPT[:32], 16)])
    hashes = block_hashes(PROMPT[:32], 16)
    assert tr.translate([BlockRemoved([b"b", b"unknown"])]) == [KvEvent("removed", [hashes[1]])]
    assert tr.translate([BlockRemoved([b"unknown"])]) == []
    assert tr.cached() == [hashes[0]]
    assert tr.translate([AllBlocksCleared()]) == [KvEvent("cleared")]
    assert tr.cached() == []


def test_a_block_whose_parent_was_never_seen_is_skipped_and_counted() -> None:
    tr = KvEventTranslator()
    assert tr.translate([BlockStored([b"x"], b"never-seen", PROMPT[:16], 16)]) == []
    assert tr.unknown_parents == 1
    assert tr.cached() == []


def test_token_count_must_match_the_block_count() -> None:
    tr = KvEventTranslator()
    assert tr.translate([BlockStored([b"a", b"b"], None, PROMPT[:20], 16)]) == []
    assert tr.cached() == []


def test_a_root_block_has_no_parent_hash() -> None:
    tr = KvEventTranslator()
    (event,) = tr.translate([BlockStored([b"a"], None, PROMPT[:16], 16)])
    assert event.parent_hash is None
    assert event.block_hashes == block_hashes(PROMPT[:16], 16, ROOT_HASH)


@pytest.mark.parametrize(
    ("endpoint", "address", "bind"),
    [
        ("ipc:///run/x/kv", "ipc:///run/x/kv", False),
        ("tcp://*:5557", "tcp://127.0.0.1:5557", False),
        ("tcp://[::]:5557", "tcp://127.0.0.1:5557", False),
        ("tcp://127.0.0.1:5557", "tcp://127.0.0.1:5557", True),
    ],
)
def test_subscriber_binds_only_where_vllm_connects(endpoint: str, address: str, bind: bool) -> None:
    assert subscriber_address(endpoint) == (address, bind)
