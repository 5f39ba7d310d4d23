"""vLLM KV events -> the runtime's chained-hash KV events, and the ZMQ address rules.

The translator dispatches on vLLM's event class names, so the stand-ins below carry those names
and fields; the real classes are exercised by the engine tier (tests/engine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from dgd_runtime.engines.vllm import (
    KvEventTranslator,
    media_session,
    session_root,
    subscriber_address,
)
from dgd_runtime.kv.hashing import ROOT_HASH, block_hashes, media_root
from dgd_runtime.preprocess.multimodal import MEDIA_PLACEHOLDER_ID
from dgd_runtime.protocol import (
    KvEvent,
    MediaRef,
    ModelCard,
    PreprocessedRequest,
    SamplingOptions,
    WorkerInstance,
)
from dgd_runtime.router.policies import KvPolicy

pytestmark = pytest.mark.unit


@dataclass
class BlockStored:
    block_hashes: list[bytes]
    parent_block_hash: bytes | None
    token_ids: list[int]
    block_size: int
    extra_keys: list[tuple[Any, ...] | None] | None = None
    session_id: str | None = None


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


IMAGE = 9000  # the model's image token: vLLM's prompt has it where ours has placeholders
BS = 4


def _vllm_tokens(ours: list[int]) -> list[int]:
    return [IMAGE if t == MEDIA_PLACEHOLDER_ID else t for t in ours]


def _stored_batches(
    ours: list[int], hashes: list[int | None], splits: list[int], tag: str
) -> list[BlockStored]:
    """vLLM's events for prompt ``ours`` stored in batches of ``splits`` blocks each."""
    vllm = _vllm_tokens(ours)
    session = media_session(hashes) if hashes else None
    events = []
    start = 0
    for n in splits:
        names = [f"{tag}{i}".encode() for i in range(start, start + n)]
        parent = f"{tag}{start - 1}".encode() if start else None
        tokens = vllm[start * BS : (start + n) * BS]
        keys: list[tuple[Any, ...] | None] = [
            (("dgd-x", 0),) if IMAGE in tokens[i * BS : (i + 1) * BS] else None for i in range(n)
        ]
        events.append(BlockStored(names, parent, tokens, BS, keys, session))
        start += n
    return events


P = MEDIA_PLACEHOLDER_ID


@pytest.mark.parametrize(
    ("ours", "hashes", "splits"),
    [
        # One image right after two text tokens, stored in one batch.
        ([11, 12] + [P] * 8 + [13, 14, 15, 16, 17, 18], [0x1234], [4]),
        # The same, stored block by block (each batch chained on the previous one).
        ([11, 12] + [P] * 8 + [13, 14, 15, 16, 17, 18], [0x1234], [1, 1, 1, 1]),
        # Text blocks first, the image later: the whole chain is rooted in its media.
        ([21, 22, 23, 24, 25, 26, 27, 28] + [P] * 8, [0x77], [2, 2]),
        # Two images (their order matters to the root).
        ([P] * 4 + [31, 32, 33, 34] + [P] * 8, [0x1, 0x2], [4]),
        ([P] * 4 + [31, 32, 33, 34] + [P] * 8, [0x2, 0x1], [1, 3]),
        # A text prompt: the text chain, as before.
        ([41, 42, 43, 44, 45, 46, 47, 48], [], [2]),
    ],
)
def test_media_blocks_get_the_hashes_the_router_computes_for_the_request(
    ours: list[int], hashes: list[int | None], splits: list[int]
) -> None:
    tr = KvEventTranslator(media_token_id=IMAGE)
    out = [
        ev for batch in _stored_batches(ours, hashes, splits, "v") for ev in tr.translate([batch])
    ]
    root = media_root(hashes) if hashes else ROOT_HASH
    expected = block_hashes(ours, BS, root)
    assert [h for ev in out for h in ev.block_hashes] == expected
    assert out[0].parent_hash == (None if root == ROOT_HASH else root)
    assert sorted(tr.cached()) == sorted(expected)


def test_a_text_prefix_vllm_shares_across_media_is_announced_under_each_root() -> None:
    # vLLM keys a text block by its tokens alone: a prompt with an image after the same text
    # reuses it (no event) and stores only its own blocks, chained on the shared one.
    tr = KvEventTranslator(media_token_id=IMAGE)
    text = [51, 52, 53, 54]
    tr.translate([BlockStored([b"t0"], None, text, BS)])
    image_part = [P] * 4
    later = BlockStored(
        [b"m1"], b"t0", _vllm_tokens(image_part), BS, [(("dgd-x", 0),)], media_session([0x99])
    )
    out = tr.translate([later])
    root = media_root([0x99])
    expected = block_hashes(text + image_part, BS, root)
    assert out == [
        KvEvent("stored", expected[:1], root),
        KvEvent("stored", expected[1:], expected[0]),
    ]
    text_hash = block_hashes(text, BS)[0]
    assert sorted(tr.cached()) == sorted([text_hash, *expected])
    # Evicting the shared block drops it under both roots.
    (removed,) = tr.translate([BlockRemoved([b"t0"])])
    assert sorted(removed.block_hashes) == sorted([text_hash, expected[0]])


def test_media_blocks_without_our_session_are_skipped_and_counted() -> None:
    tr = KvEventTranslator(media_token_id=IMAGE)
    foreign = BlockStored([b"a"], None, [IMAGE] * 4, BS, [(("someone-else", 0),)], "user-7")
    assert tr.translate([foreign]) == []
    assert tr.unrooted_media == 1
    assert tr.cached() == []


def test_media_sessions_name_the_media_root() -> None:
    assert session_root(media_session([0x1234, None])) == media_root([0x1234, 0])
    assert session_root(None) is None
    assert session_root("user-7") is None
    assert session_root("dgd-media:not-hex") is None


def test_the_kv_router_sends_an_image_prompt_to_the_worker_whose_vllm_cached_it() -> None:
    ours = [11, 12] + [P] * 8 + [13, 14, 15, 16, 17, 18]
    ref = MediaRef("image", "messages[0].content[0].image_url", 0x1234)
    policy = KvPolicy()
    holder, other = KvEventTranslator(media_token_id=IMAGE), KvEventTranslator(media_token_id=IMAGE)
    policy.kv_events("w1", other.translate(_stored_batches([61] * 16, [], [4], "o")))
    policy.kv_events("w2", holder.translate(_stored_batches(ours, [0x1234], [4], "h")))
    card = ModelCard("m", "/m", 100, BS)
    cands = [WorkerInstance(w, "ns", "backend", "generate", w, card) for w in ("w1", "w2")]
    request = PreprocessedRequest("r", "m", ours, SamplingOptions(max_tokens=4), mm=[ref])
    decision = policy.choose(request, cands)
    assert decision.instance.instance_id == "w2"
    assert decision.overlap_blocks == 4


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
