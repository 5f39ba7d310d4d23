"""Wire formats shared by router, transport and workers: round trips and malformed input."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
import pytest

from dgd_runtime.protocol import (
    EngineOutput,
    KvEvent,
    MediaRef,
    ModelCard,
    PreprocessedRequest,
    RuntimeProtocolError,
    SamplingOptions,
    WorkerInstance,
    WorkerLostError,
    decode_instance,
    decode_kv_events,
    decode_model_card,
    decode_output,
    decode_request,
    decode_sampling,
    encode_instance,
    encode_kv_events,
    encode_model_card,
    encode_output,
    encode_request,
    encode_sampling,
)
from dgd_runtime.transport import wire
from dgd_runtime.transport.client import ResponseStream, StreamClient, WorkerRefusedError
from dgd_runtime.transport.subjects import (
    discovery_subject,
    namespace_matches,
    request_subject,
    token,
)

pytestmark = pytest.mark.unit

CARD = ModelCard("Qwen/Qwen2.5-0.5B", "/models/q", 32768, 64, extra={"engine": "mock"})


def test_request_round_trip() -> None:
    req = PreprocessedRequest(
        "id-1",
        "m",
        [1, 2, 151_000],
        SamplingOptions(
            max_tokens=7,
            min_tokens=1,
            temperature=0.5,
            top_p=0.9,
            top_k=20,
            seed=3,
            ignore_eos=True,
            stop_token_ids=[5],
            frequency_penalty=0.1,
            presence_penalty=-0.2,
        ),
        [151645],
    )
    assert decode_request(encode_request(req)) == req
    assert decode_sampling(encode_sampling(req.sampling)) == req.sampling


@pytest.mark.parametrize(
    "out",
    [
        EngineOutput([1, 2, 3]),
        EngineOutput([4], "length"),
        EngineOutput([], "error", "boom"),
        EngineOutput([9], None, None, 64),
        EngineOutput([5], "length", None, 0, {"tag": "mock", "blocks": [1, 2]}),
    ],
)
def test_output_round_trip(out: EngineOutput) -> None:
    assert decode_output(encode_output(out)) == out


def test_hot_path_output_is_compact() -> None:
    assert encode_output(EngineOutput([17])) == b"[[17]]"


@pytest.mark.parametrize(
    ("disagg", "mm"),
    [
        ({"tag": "vllm", "remote_block_ids": [3, 4]}, None),
        (None, [MediaRef("image", "data:image/png;base64,AAAA", 2**62)]),
        ({"tag": "mock"}, [MediaRef("audio", "https://x/a.wav"), MediaRef("video", "h:1", 5)]),
    ],
)
def test_disagg_and_multimodal_request_round_trip(
    disagg: dict[str, object] | None, mm: list[MediaRef] | None
) -> None:
    req = PreprocessedRequest("r", "m", [1, 2], SamplingOptions(max_tokens=1), [0], disagg, mm)
    assert decode_request(encode_request(req)) == req


def test_plain_request_carries_no_disagg_or_media_slots() -> None:
    req = PreprocessedRequest("r", "m", [1], SamplingOptions())
    assert len(orjson.loads(encode_request(req))) == 5


def test_card_and_instance_round_trip() -> None:
    inst = WorkerInstance("abc", "dynamo", "backend", "generate", "dgd.rq.x", CARD)
    assert decode_model_card(encode_model_card(CARD)) == CARD
    assert decode_instance(encode_instance(inst)) == inst
    assert {inst: 1}[inst] == 1  # hashable despite the dict in the card


def test_kv_events_round_trip() -> None:
    events = [KvEvent("stored", [1, 2**62], 7), KvEvent("removed", [3]), KvEvent("cleared")]
    assert decode_kv_events(encode_kv_events(events)) == events


def _request_with(tail: bytes) -> bytes:
    """A valid plain request array with ``tail`` appended as its optional elements."""
    plain = encode_request(PreprocessedRequest("r", "m", [1], SamplingOptions()))
    return plain[:-1] + b"," + tail + b"]"


@pytest.mark.parametrize(
    ("decoder", "data", "message"),
    [
        (decode_request, b"[1,2]", "request"),
        (decode_request, _request_with(b'"nope"'), "disagg must be an object"),
        (decode_request, _request_with(b'null, [["smell", "u", null]]'), "bad media reference"),
        (decode_output, b'[[1], "stop", null, null, 7]', "disagg must be an object"),
        (decode_output, b"{}", "engine output"),
        (decode_model_card, b'{"name": "x"}', "missing field 'model_path'"),
        (decode_instance, b"[]", "worker instance"),
        (decode_kv_events, b'[["bogus", [], null]]', "bad event"),
        (decode_output, b"not json", "invalid JSON"),
    ],
)
def test_malformed_input_is_a_protocol_error(decoder: object, data: bytes, message: str) -> None:
    assert callable(decoder)
    with pytest.raises(RuntimeProtocolError, match=message):
        decoder(data)


def test_request_envelope() -> None:
    req = PreprocessedRequest("r", "m", [1], SamplingOptions())
    assert wire.decode_request_envelope(wire.encode_request_envelope(req, 32)) == (32, req, None)
    # A client that takes batched frames names its mux subject (older workers never get one).
    mux = wire.encode_request_envelope(req, 32, "_DGD.ab.m")
    assert wire.decode_request_envelope(mux) == (32, req, "_DGD.ab.m")
    with pytest.raises(RuntimeProtocolError, match="mux subject"):
        wire.decode_request_envelope(b'[1, 1, ["r", "m", [1], []], 7]')
    with pytest.raises(RuntimeProtocolError, match="unsupported protocol version 9"):
        wire.decode_request_envelope(b"[9, 1, []]")
    with pytest.raises(RuntimeProtocolError, match="window"):
        wire.decode_request_envelope(b"[1, 0, []]")


def test_batched_frames_round_trip() -> None:
    frames = [(b"1", b"D1|[1]"), (b"22", b""), (b"x" * 255, b"K" * 70_000)]
    payload = b"".join(wire.mux_entry(token, frame) for token, frame in frames)
    assert wire.split_mux(payload) == frames
    assert wire.split_mux(b"") == []
    for cut in (1, 3, len(payload) - 1):
        with pytest.raises(RuntimeProtocolError, match="truncated"):
            wire.split_mux(payload[:cut])


def test_instance_features_are_optional_in_discovery_records() -> None:
    from dgd_runtime.protocol import (
        ModelCard,
        WorkerInstance,
        decode_instance,
        encode_instance,
        instance_to_dict,
    )

    card = ModelCard("m", "/m", 128, 16)
    plain = WorkerInstance("i", "ns", "c", "e", "s", card)
    assert "features" not in instance_to_dict(plain)  # records of older workers look the same
    assert decode_instance(encode_instance(plain)) == plain
    muxed = WorkerInstance("i", "ns", "c", "e", "s", card, features=(wire.FEATURE_MUX,))
    assert decode_instance(encode_instance(muxed)).features == ("mux",)


def test_control_messages() -> None:
    inbox = "_DGD.abcd.12"
    assert wire.decode_control(wire.encode_control(wire.CTL_CREDIT, inbox, 32)) == (
        wire.CTL_CREDIT,
        inbox,
        32,
    )
    assert wire.decode_control(wire.encode_control(wire.CTL_CANCEL, inbox)) == (
        wire.CTL_CANCEL,
        inbox,
        0,
    )
    with pytest.raises(RuntimeProtocolError):
        wire.decode_control(b"C12")


def test_subjects_are_safe_tokens() -> None:
    assert token("a.b c*>") == "a_b_c__"
    assert (
        request_subject("my-ns", "backend", "generate", "ff") == "dgd.rq.my-ns.backend.generate.ff"
    )
    assert discovery_subject("*", "backend", "generate") == "dgd.disc.*.backend.generate"
    assert namespace_matches("dynamo-abc", "dynamo", prefix=True)
    assert not namespace_matches("dynamo-abc", "dynamo", prefix=False)
    assert not namespace_matches("dynamox", "dynamo", prefix=True)


def test_data_frames_carry_a_sequence_number() -> None:
    frame = wire.data_frame(12, encode_output(EngineOutput([1, 2])))
    assert frame == b"D12|[[1,2]]"
    seq, payload = wire.split_data_frame(frame)
    assert seq == 12
    assert decode_output(payload) == EngineOutput([1, 2])
    with pytest.raises(RuntimeProtocolError):
        wire.split_data_frame(b"Dx|[]")


def _stream() -> ResponseStream:
    client = StreamClient(cast(Any, None))
    card = ModelCard("m", "/m", 16, 4)
    inst = WorkerInstance("w1", "ns", "backend", "generate", "dgd.rq.ns.backend.generate.w1", card)
    return ResponseStream(client, "_DGD.x.1", inst, window=64)


async def test_a_lost_message_fails_the_stream_instead_of_leaving_a_hole() -> None:
    st = _stream()
    st._push(wire.data_frame(1, encode_output(EngineOutput([5]))), 0.0)
    st._push(wire.KEEPALIVE, 0.0)
    st._push(wire.data_frame(3, encode_output(EngineOutput([7]))), 0.0)
    assert (await st.next()).token_ids == [5]
    with pytest.raises(WorkerLostError, match="message 2 of the stream was lost"):
        await st.next()
    assert st.finished


async def test_a_stream_the_worker_forgot_fails() -> None:
    st = _stream()
    st._push(wire.GONE, 0.0)
    with pytest.raises(WorkerLostError, match="no longer knows this stream"):
        await st.next()


async def test_refusal_before_start() -> None:
    st = _stream()
    st._push(b"Rdraining", 0.0)
    with pytest.raises(WorkerRefusedError, match="draining"):
        await st.next()


@pytest.mark.parametrize(
    ("frame", "seq", "expected"),
    [
        (b"D7|[[123]]", 7, 123),
        (b"D7|[[0]]", 7, 0),
        (b"D7|[[123]]", 8, None),  # not the expected message
        (b"D17|[[1]]", 1, None),
        (b"D7|[[1,2]]", 7, None),  # two tokens
        (b'D7|[[1],"length"]', 7, None),  # finished
        (b"D7|[[]]", 7, None),
        (b"D7|[[-1]]", 7, None),
        (b"K", 1, None),
    ],
)
def test_plain_token_is_only_a_lone_token_of_the_expected_frame(
    frame: bytes, seq: int, expected: int | None
) -> None:
    assert wire.plain_token(frame, seq) == expected
    if expected is not None:  # what the worker writes for such an output
        assert frame == wire.data_frame(seq, encode_output(EngineOutput([expected])))


def _frame(seq: int, *tokens: int, finish: str | None = None) -> bytes:
    return wire.data_frame(seq, encode_output(EngineOutput(list(tokens), finish)))


async def _waiting_next(st: ResponseStream) -> asyncio.Task[EngineOutput]:
    task = asyncio.create_task(st.next())
    await asyncio.sleep(0)  # now it waits for a frame
    assert not task.done()
    return task


async def test_a_sink_takes_plain_tokens_while_the_consumer_waits() -> None:
    st = _stream()
    taken: list[int] = []
    st.set_sink(lambda t: taken.append(t) is None)
    st._push(_frame(1, 5), 0.0)  # nobody waits yet: queued for next()
    assert taken == []
    assert (await asyncio.wait_for(st.next(), 5)).token_ids == [5]
    task = await _waiting_next(st)
    st._push(_frame(2, 6), 0.0)
    st._push(_frame(3, 7), 0.0)
    assert taken == [6, 7]
    assert not task.done()
    st._push(_frame(4, 8, finish="length"), 0.0)  # not plain: the consumer's
    out = await asyncio.wait_for(task, 5)
    assert (out.token_ids, out.finish_reason) == ([8], "length")
    assert taken == [6, 7]


async def test_a_declined_token_and_those_after_it_come_from_next_in_order() -> None:
    st = _stream()
    taken: list[int] = []
    st.set_sink(lambda t: t != 9 and taken.append(t) is None)
    st._push(_frame(1, 5), 0.0)
    await asyncio.wait_for(st.next(), 5)
    task = await _waiting_next(st)
    for seq, tid in ((2, 6), (3, 9), (4, 10)):
        st._push(_frame(seq, tid), 0.0)
    assert taken == [6]
    assert (await asyncio.wait_for(task, 5)).token_ids == [9]
    assert (await asyncio.wait_for(st.next(), 5)).token_ids == [
        10
    ]  # queued behind 9, not handed to the sink


async def test_a_frame_out_of_sequence_is_not_taken() -> None:
    st = _stream()
    taken: list[int] = []
    st.set_sink(lambda t: taken.append(t) is None)
    st._push(_frame(1, 5), 0.0)
    await asyncio.wait_for(st.next(), 5)
    task = await _waiting_next(st)
    st._push(_frame(3, 7), 0.0)  # message 2 was lost
    with pytest.raises(WorkerLostError, match="message 2 of the stream was lost"):
        await asyncio.wait_for(task, 5)  # bounded: a frame taken by mistake leaves it waiting
    assert taken == []


async def test_tokens_taken_by_the_sink_grant_credits(monkeypatch: pytest.MonkeyPatch) -> None:
    client = StreamClient(cast(Any, None))
    card = ModelCard("m", "/m", 16, 4)
    inst = WorkerInstance("w1", "ns", "backend", "generate", "dgd.rq.ns.backend.generate.w1", card)
    st = ResponseStream(client, "_DGD.x.1", inst, window=4)
    grants: list[tuple[int, int]] = []
    monkeypatch.setattr(
        client, "_control_soon", lambda s, kind, amount=0: grants.append((kind, amount))
    )
    st.set_sink(lambda t: True)
    st._push(_frame(1, 5), 0.0)
    await asyncio.wait_for(st.next(), 5)
    task = await _waiting_next(st)
    for seq in range(2, 8):
        st._push(_frame(seq, seq), 0.0)
    # The first output (from next) and six taken: a credit of 2 each time two are consumed.
    assert grants == [(wire.CTL_CREDIT, 2)] * 3
    task.cancel()


async def test_a_failing_sink_is_dropped_and_its_token_comes_from_next() -> None:
    st = _stream()

    def broken(token: int) -> bool:
        raise RuntimeError("consumer bug")

    st.set_sink(broken)
    st._push(_frame(1, 5), 0.0)
    await asyncio.wait_for(st.next(), 5)
    task = await _waiting_next(st)
    st._push(_frame(2, 6), 0.0)
    assert (await asyncio.wait_for(task, 5)).token_ids == [6]
    st._push(_frame(3, 7), 0.0)
    assert (await asyncio.wait_for(st.next(), 5)).token_ids == [7]
