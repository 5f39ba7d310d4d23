"""Pure parts of disaggregation and multimodal input: the mock hand-off, media, hashing."""

from __future__ import annotations

import asyncio
import base64
import struct
import zlib
from collections.abc import AsyncIterator

import pytest

from dgd_runtime.encode.encoder import BYTES_PER_VALUE, mock_embeddings
from dgd_runtime.engines.base import DisaggDecode, DisaggPrefill, MultimodalInput
from dgd_runtime.engines.mock import MockEngine, MockEngineConfig
from dgd_runtime.frontend.openai import ApiError, parse_chat_request
from dgd_runtime.kv.hashing import ROOT_HASH, block_hashes, media_root
from dgd_runtime.preprocess.multimodal import (
    MEDIA_PLACEHOLDER,
    MediaInputError,
    decode_data_url,
    expand_placeholders,
    image_size,
    media_hash,
    placeholder_count,
)
from dgd_runtime.protocol import (
    EngineOutput,
    MediaRef,
    PreprocessedRequest,
    SamplingOptions,
    decode_request,
    encode_request,
)
from dgd_runtime.router.policies import KvPolicy

pytestmark = pytest.mark.unit

FAST = 1_000_000.0


def _png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )


def _req(rid: str, tokens: list[int], max_tokens: int = 6, **kw: object) -> PreprocessedRequest:
    return PreprocessedRequest(
        rid, "m", tokens, SamplingOptions(max_tokens=max_tokens, ignore_eos=True, seed=5), **kw
    )  # type: ignore[arg-type]


async def _collect(agen: AsyncIterator[EngineOutput]) -> list[EngineOutput]:
    return [out async for out in agen]


@pytest.fixture
async def engines() -> AsyncIterator[tuple[MockEngine, MockEngine]]:
    cfg = MockEngineConfig(block_size=4, speedup_ratio=FAST, vocab_size=500, num_gpu_blocks=64)
    prefill, decode = MockEngine(cfg), MockEngine(cfg)
    await prefill.start()
    await decode.start()
    yield prefill, decode
    await prefill.stop()
    await decode.stop()


def test_mock_engine_declares_the_capabilities() -> None:
    engine = MockEngine()
    assert isinstance(engine, DisaggPrefill) and engine.transfer_tag == "mock"
    assert isinstance(engine, DisaggDecode) and engine.accepts_transfer("mock")
    assert not engine.accepts_transfer("vllm-nixl")
    assert isinstance(engine, MultimodalInput) and "image" in engine.media_kinds


async def test_hand_off_holds_blocks_until_released_and_decode_skips_prefill(
    engines: tuple[MockEngine, MockEngine],
) -> None:
    prefill, decode = engines
    prompt = list(range(1, 19))  # 18 tokens: 4 full blocks + a tail
    outs = await _collect(prefill.generate(_req("r1", prompt, 1, disagg={"tag": "mock"})))
    params = outs[-1].disagg
    assert params == {"tag": "mock", "handle": "r1", "tokens": 18}
    assert prefill.held_transfers == 1
    assert prefill.stats().kv_active_blocks == 5  # held, not idle

    decoded = await _collect(decode.generate(_req("r1", prompt, 6, disagg=params)))
    assert decoded[0].cached_tokens == 18  # the handed-over prompt counts as cached
    assert sum(len(o.token_ids) for o in decoded) == 6
    # Same request id and seed: the tokens a local prefill would give.
    local = await _collect(decode.generate(_req("r1", prompt, 6)))
    assert [t for o in local for t in o.token_ids] == [t for o in decoded for t in o.token_ids]

    assert prefill.release_transfer("r1")
    assert not prefill.release_transfer("r1")
    assert prefill.held_transfers == 0
    assert prefill.stats().kv_active_blocks == 0


async def test_unclaimed_hand_off_expires() -> None:
    engine = MockEngine(MockEngineConfig(block_size=4, speedup_ratio=FAST, transfer_timeout_s=0.01))
    await engine.start()
    try:
        await _collect(engine.generate(_req("r", list(range(10)), 1, disagg={"tag": "mock"})))
        assert engine.held_transfers == 1
        for _ in range(200):
            if engine.held_transfers == 0:
                break
            await asyncio.sleep(0.01)
        assert engine.held_transfers == 0
        assert engine.transfers_expired == 1
        assert engine.stats().kv_active_blocks == 0
    finally:
        await engine.stop()


async def test_media_changes_output_and_block_hashes(
    engines: tuple[MockEngine, MockEngine],
) -> None:
    engine, _ = engines
    prompt = [0] * 16 + [7, 8]

    def with_image(rid: str, data: bytes) -> PreprocessedRequest:
        ref = MediaRef("image", "x", media_hash("image", data), data)
        return _req(rid, prompt, 6, mm=[ref])

    red = await _collect(engine.generate(with_image("a", b"red")))
    red_again = await _collect(engine.generate(with_image("a2", b"red")))
    blue = await _collect(engine.generate(with_image("a", b"blue")))
    tokens = lambda outs: [t for o in outs for t in o.token_ids]  # noqa: E731
    assert tokens(red) != tokens(blue)
    assert red[0].cached_tokens == 0
    assert red_again[0].cached_tokens == 16  # same image: prefix hit
    assert blue[0].cached_tokens == 0  # same tokens, other image: nothing shared


def test_media_root_separates_chains() -> None:
    tokens = list(range(32))
    plain = block_hashes(tokens, 8)
    red = block_hashes(tokens, 8, media_root([1]))
    blue = block_hashes(tokens, 8, media_root([2]))
    assert len({*plain, *red, *blue}) == 12
    assert block_hashes(tokens, 8, media_root([1])) == red
    assert media_root([1, 2]) != media_root([2, 1])
    assert media_root([1]) != ROOT_HASH


def test_kv_router_hashes_media_like_the_engine() -> None:
    policy = KvPolicy()
    ref = MediaRef("image", "x", 42)
    tokens = list(range(8))
    root = media_root([42])
    policy.kv_events("w1", [])
    policy.index.stored("w1", block_hashes(tokens, 4, root))
    policy.index.stored("w2", block_hashes(tokens, 4))
    from dgd_runtime.protocol import ModelCard, WorkerInstance

    card = ModelCard("m", "/m", 100, 4)
    cands = [WorkerInstance(w, "ns", "backend", "generate", w, card) for w in ("w1", "w2")]
    decision = policy.choose(_req("r", tokens, mm=[ref]), cands)
    assert decision.instance.instance_id == "w1" and decision.overlap_blocks == 2
    decision = policy.choose(_req("r", tokens), cands)
    assert decision.instance.instance_id == "w2"


def test_request_wire_keeps_media_refs_but_never_payloads() -> None:
    ref = MediaRef("image", "dgd-obj://emb-1", 9, b"\x00" * 1000)
    wire = encode_request(_req("r", [1, 2], mm=[ref], disagg={"tag": "mock"}))
    assert len(wire) < 300
    back = decode_request(wire)
    assert back.mm == [MediaRef("image", "dgd-obj://emb-1", 9)]
    assert back.mm[0].payload is None
    assert back.disagg == {"tag": "mock"}


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (_png(640, 480), (640, 480)),
        (b"GIF89a" + struct.pack("<HH", 30, 20) + b"\x00" * 8, (30, 20)),
        (
            b"\xff\xd8\xff\xe0"
            + struct.pack(">H", 4)
            + b"\x00\x00"
            + b"\xff\xc0"
            + struct.pack(">HBHH", 11, 8, 50, 70)
            + b"\x00" * 8,
            (70, 50),
        ),
        (b"BM" + b"\x00" * 16 + struct.pack("<ii", 10, -12), (10, 12)),
    ],
)
def test_image_size_from_headers(data: bytes, size: tuple[int, int]) -> None:
    assert image_size(data, "p") == size


@pytest.mark.parametrize(
    "data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 4, _png(0, 10)]
)
def test_undecodable_images_name_the_part(data: bytes) -> None:
    with pytest.raises(MediaInputError) as err:
        placeholder_count("image", data, "messages[0].content[1].image_url")
    assert err.value.param == "messages[0].content[1].image_url"


def test_placeholders_per_patch_and_expansion() -> None:
    assert placeholder_count("image", _png(56, 28), "p") == 2
    assert placeholder_count("image", _png(20000, 20000), "p") == 1024  # capped
    wav = b"RIFF" + b"\x00" * 4 + b"WAVE" + b"\x00" * 16 + struct.pack("<I", 32000) + b"\x00" * 12
    assert placeholder_count("audio", wav + b"\x00" * 32000, "p") == 25  # one second
    assert expand_placeholders([[1], [2, 3], []], [2, 1], 0) == [1, 0, 0, 2, 3, 0]


def test_data_urls() -> None:
    assert decode_data_url("data:image/png;base64," + base64.b64encode(b"abc").decode(), "p", 10)
    for bad, message in [
        ("data:image/png,abc", "base64"),
        ("data:image/png;base64,@@@", "base64"),
        ("data:image/png;base64," + "A" * 100, "larger"),
    ]:
        with pytest.raises(MediaInputError, match=message):
            decode_data_url(bad, "p", 10)


def test_mock_encoder_output_is_sized_and_content_derived() -> None:
    emb, shape = mock_embeddings("image", _png(112, 56), hidden_size=64)
    assert shape == (8, 64) and len(emb) == 8 * 64 * BYTES_PER_VALUE
    assert mock_embeddings("image", _png(112, 56), hidden_size=64)[0] == emb
    assert mock_embeddings("image", _png(112, 57), hidden_size=64)[0] != emb


def test_chat_parts_become_media_and_placeholders() -> None:
    params = parse_chat_request(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look" + MEDIA_PLACEHOLDER},
                        {"type": "image_url", "image_url": {"url": "http://127.0.0.1/a.png"}},
                        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                        {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AA=="}},
                    ],
                }
            ],
        }
    )
    assert params.messages[0]["content"] == "look" + MEDIA_PLACEHOLDER * 3
    assert [(m.kind, m.param) for m in params.media] == [
        ("image", "messages[0].content[1].image_url"),
        ("audio", "messages[0].content[2].input_audio"),
        ("video", "messages[0].content[3].video_url"),
    ]
    assert params.media[1].url == "data:audio/wav;base64,AAAA"


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "file", "file": {}}, "messages[0].content[0]"),
        ({"type": "image_url", "image_url": {"url": "ftp://x"}}, "messages[0].content[0].image_url"),
        ({"type": "input_audio", "input_audio": {"data": "A", "format": "ogg"}},
         "messages[0].content[0].input_audio"),
    ],
)  # fmt: skip
def test_bad_parts_are_400s_naming_them(part: dict[str, object], param: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_chat_request({"model": "m", "messages": [{"role": "user", "content": [part]}]})
    assert err.value.status == 400 and err.value.param == param


@pytest.mark.parametrize(
    ("argv", "env", "role", "component"),
    [
        ([], "", "aggregated", "backend"),
        ([], "prefill", "prefill", "prefill"),
        ([], "decode", "decode", "backend"),
        (["--disaggregation-mode", "prefill"], "", "prefill", "prefill"),
        (["--disaggregation-mode", "agg"], "decode", "aggregated", "backend"),
        (["--is-decode-worker"], "", "decode", "backend"),
    ],
)
def test_worker_role_from_flags_and_environment(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: str, role: str, component: str
) -> None:
    from dgd_runtime.worker.cli import default_component, parse_args, worker_role

    monkeypatch.setenv("DYN_COMPONENT", env)
    args, _ = parse_args(["--model-path", "/m", *argv])
    assert worker_role(args) == role
    assert default_component(worker_role(args)) == component


def test_a_worker_card_advertises_role_and_capabilities() -> None:
    from dgd_runtime.protocol import ModelCard
    from dgd_runtime.worker.service import card_with_role

    card = card_with_role(ModelCard("m", "/m", 10, 4), MockEngine(), "prefill")
    assert card.extra["worker_type"] == "prefill"
    assert card.extra["transfer_tag"] == "mock"
    assert card.extra["media_kinds"] == ["audio", "image", "video"]


def test_serve_plans_encode_workers_and_leaves_processors_to_the_frontend() -> None:
    from tests.fixtures.catalog import graph_path

    from dgd_operator.commands.serve import plan_from_dgd, read_dgd

    plan = plan_from_dgd(read_dgd(str(graph_path("multimodal"))))
    assert [(c.name, c.role) for c in plan.components] == [
        ("EncodeWorker", "encode"),
        ("LMWorker", "worker"),
    ]
    assert plan.describe() == "encode 1 → 1 aggregated worker"


@pytest.mark.parametrize(
    ("roles", "text"),
    [
        ({"worker": 2}, "2 aggregated workers"),
        ({"prefill": 2, "decode": 3}, "prefill 2 → decode 3 (disaggregated)"),
        ({"decode": 1}, "decode 1 (local prefill: no prefill workers)"),
        (
            {"encode": 1, "prefill": 1, "decode": 1},
            "encode 1 → prefill 1 → decode 1 (disaggregated)",
        ),
    ],
)
def test_plan_describes_its_serving_shape(roles: dict[str, int], text: str) -> None:
    from dgd_runtime.local.plan import LocalComponent, LocalPlan

    components = tuple(LocalComponent(r, r, n) for r, n in roles.items())  # type: ignore[arg-type]
    assert LocalPlan("g", "g", components).describe() == text
