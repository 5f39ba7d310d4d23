"""Wire protocol of the dgd runtime: the objects that cross process boundaries.

The frontend turns an OpenAI request into a :class:`PreprocessedRequest` (token ids plus
sampling options), the router picks a :class:`WorkerInstance`, the worker's engine streams
:class:`EngineOutput` chunks back. Every type has ``encode_*``/``decode_*`` helpers producing
compact orjson bytes; the hot-path types (request, output) use positional arrays rather than
objects so that encoding and decoding allocate as little as possible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

FinishReason = Literal["stop", "length", "cancelled", "error"]

FINISH_STOP: Final = "stop"
FINISH_LENGTH: Final = "length"
FINISH_CANCELLED: Final = "cancelled"
FINISH_ERROR: Final = "error"


class RuntimeProtocolError(ValueError):
    """A message on the wire could not be decoded (wrong shape or version)."""


class RequestTooLargeError(RuntimeProtocolError):
    """The encoded request does not fit in one request-plane message (the client's fault)."""


class NoWorkersError(RuntimeError):
    """No live worker serves the requested endpoint (raised before the first output)."""


class WorkerLostError(RuntimeError):
    """The worker serving a stream died or became unreachable after the stream started."""


class RequestCancelled(Exception):  # noqa: N818 - name fixed by the shared contract
    """The request was cancelled (client went away or the worker shut down)."""


@dataclass(slots=True)
class SamplingOptions:
    """Sampling and stopping parameters of one generation request."""

    max_tokens: int | None = None
    min_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    seed: int | None = None
    ignore_eos: bool = False
    stop_token_ids: list[int] = field(default_factory=list)
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0


DisaggParams = dict[str, Any]
"""Engine-tagged transfer parameters of disaggregated serving, opaque to everything but engines.

``"tag"`` names the engine's transfer kind (``"mock"``, ``"vllm-nixl"``, ...); the other keys
are the engine's own (vLLM ``kv_transfer_params``, SGLang bootstrap host/port/room, TRT-LLM
``disaggregated_params``). On a request to a prefill worker it asks for a prefill-only run
(``{"tag": ...}``); the prefill's final output returns the full parameters, which the decode
request then carries.
"""

MediaKind = Literal["image", "video", "audio"]


@dataclass(slots=True, frozen=True)
class MediaRef:
    """One media input of a multimodal request, as a reference (never the bytes inline).

    ``url`` is where the engine or encode worker fetches it: a ``data:`` or ``http(s):`` URL
    from the client, or a handle to embeddings an encode worker produced. ``media_hash``
    (63-bit, from the media's content) is mixed into the KV block hashes of the request, so
    two prompts with the same text but different images never share a prefix.
    """

    kind: MediaKind
    url: str
    media_hash: int | None = None
    payload: bytes | None = field(default=None, compare=False, repr=False)
    """Worker-local only (never on the wire): the bytes ``url`` resolved to in the worker
    (raw media, or embeddings when ``url`` names an encode worker's output)."""


@dataclass(slots=True)
class PreprocessedRequest:
    """A tokenized request as the router and the workers see it.

    ``disagg`` (transfer parameters, see :data:`DisaggParams`) and ``mm`` (media inputs) are
    set only for disaggregated and multimodal requests; a plain request leaves both ``None``
    and costs nothing extra on the wire.
    """

    request_id: str
    model: str
    token_ids: list[int]
    sampling: SamplingOptions
    eos_token_ids: list[int] = field(default_factory=list)
    disagg: DisaggParams | None = None
    mm: list[MediaRef] | None = None


@dataclass(slots=True)
class EngineOutput:
    """One streamed chunk: the tokens generated since the previous chunk.

    ``finish_reason`` is set on the last chunk only ("stop", "length", "cancelled", "error");
    ``error`` carries a message when it is "error"; ``cached_tokens`` (prefix-cache hits of the
    prompt) is set on the first chunk only; ``disagg`` (the transfer parameters a decode worker
    needs, :data:`DisaggParams`) is set on the final chunk of a prefill-only request.
    ``media_index`` (with "error", before any token) says the engine could not use item i of
    the request's ``mm`` (e.g. undecodable image bytes): the client's fault, answered 400.
    """

    token_ids: list[int]
    finish_reason: str | None = None
    error: str | None = None
    cached_tokens: int | None = None
    disagg: DisaggParams | None = None
    media_index: int | None = None


@dataclass(slots=True, frozen=True)
class ModelCard:
    """What a worker serves: enough for a frontend to tokenize and to route."""

    name: str
    model_path: str
    context_length: int
    kv_block_size: int
    tokenizer: str = "hf"
    # Left out of the hash (a dict is unhashable) so cards and instances can key dicts/sets.
    extra: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(slots=True, frozen=True)
class WorkerInstance:
    """One live worker endpoint as registered in discovery."""

    instance_id: str
    namespace: str
    component: str
    endpoint: str
    subject: str
    model: ModelCard
    features: tuple[str, ...] = ()
    """Request-plane features the worker supports (e.g. batched frames, ``"mux"``)."""


@dataclass(slots=True)
class KvEvent:
    """A change of a worker's prefix cache, in chained block hashes.

    ``kind`` is "stored" (``block_hashes`` became cached, each extending the previous one, the
    first extending ``parent_hash`` or the empty prefix), "removed" (``block_hashes`` evicted) or
    "cleared" (the whole cache dropped).
    """

    kind: Literal["stored", "removed", "cleared"]
    block_hashes: list[int] = field(default_factory=list)
    parent_hash: int | None = None


# --------------------------------------------------------------------------- sampling


def _sampling_to_list(s: SamplingOptions) -> list[Any]:
    return [
        s.max_tokens,
        s.min_tokens,
        s.temperature,
        s.top_p,
        s.top_k,
        s.seed,
        s.ignore_eos,
        s.stop_token_ids,
        s.frequency_penalty,
        s.presence_penalty,
    ]


def _sampling_from_list(v: list[Any]) -> SamplingOptions:
    if not isinstance(v, list) or len(v) != 10:
        raise RuntimeProtocolError("sampling options: expected a 10-element array")
    return SamplingOptions(
        max_tokens=v[0],
        min_tokens=v[1],
        temperature=v[2],
        top_p=v[3],
        top_k=v[4],
        seed=v[5],
        ignore_eos=v[6],
        stop_token_ids=v[7],
        frequency_penalty=v[8],
        presence_penalty=v[9],
    )


def encode_sampling(s: SamplingOptions) -> bytes:
    """Serialize sampling options."""
    return orjson.dumps(_sampling_to_list(s))


def decode_sampling(data: bytes | str) -> SamplingOptions:
    """Parse sampling options written by :func:`encode_sampling`."""
    return _sampling_from_list(_loads(data))


# --------------------------------------------------------------------------- request


def request_to_list(r: PreprocessedRequest) -> list[Any]:
    """The positional array form of a request (embedded in transport envelopes).

    Five elements for a plain request; ``disagg`` and then ``mm`` are appended only when set,
    so the common request costs no extra bytes or work.
    """
    v: list[Any] = [
        r.request_id,
        r.model,
        r.token_ids,
        _sampling_to_list(r.sampling),
        r.eos_token_ids,
    ]
    if r.mm is not None:
        v += [r.disagg, [[m.kind, m.url, m.media_hash] for m in r.mm]]
    elif r.disagg is not None:
        v.append(r.disagg)
    return v


def request_from_list(v: Any) -> PreprocessedRequest:
    """Inverse of :func:`request_to_list`."""
    if not isinstance(v, list) or not 5 <= len(v) <= 7:
        raise RuntimeProtocolError("request: expected a 5- to 7-element array")
    request = PreprocessedRequest(
        request_id=v[0],
        model=v[1],
        token_ids=v[2],
        sampling=_sampling_from_list(v[3]),
        eos_token_ids=v[4],
    )
    if len(v) > 5:
        disagg = v[5]
        if disagg is not None and not isinstance(disagg, dict):
            raise RuntimeProtocolError("request: disagg must be an object")
        request.disagg = disagg
        if len(v) == 7:
            request.mm = _media_from_list(v[6])
    return request


def media_hashes(request: PreprocessedRequest) -> list[int | None] | None:
    """The media hashes of a multimodal request in prompt order (``None`` for a text one)."""
    mm = request.mm
    return None if not mm else [m.media_hash for m in mm]


def _media_from_list(v: Any) -> list[MediaRef]:
    if not isinstance(v, list):
        raise RuntimeProtocolError("request: mm must be an array")
    out: list[MediaRef] = []
    for item in v:
        if (
            not isinstance(item, list)
            or len(item) != 3
            or item[0] not in ("image", "video", "audio")
            or not isinstance(item[1], str)
        ):
            raise RuntimeProtocolError(f"request: bad media reference {item!r}")
        out.append(MediaRef(item[0], item[1], item[2]))
    return out


def encode_request(r: PreprocessedRequest) -> bytes:
    """Serialize a request."""
    return orjson.dumps(request_to_list(r))


def decode_request(data: bytes | str) -> PreprocessedRequest:
    """Parse a request written by :func:`encode_request`."""
    return request_from_list(_loads(data))


# --------------------------------------------------------------------------- output


def encode_output(o: EngineOutput) -> bytes:
    """Serialize one output chunk (hot path: a 1-2 element array; 4-6 elements when rarer)."""
    if o.error is None and o.cached_tokens is None and o.disagg is None:
        if o.finish_reason is None:
            return orjson.dumps([o.token_ids])
        return orjson.dumps([o.token_ids, o.finish_reason])
    if o.media_index is not None:
        return orjson.dumps(
            [o.token_ids, o.finish_reason, o.error, o.cached_tokens, o.disagg, o.media_index]
        )
    if o.disagg is None:
        return orjson.dumps([o.token_ids, o.finish_reason, o.error, o.cached_tokens])
    return orjson.dumps([o.token_ids, o.finish_reason, o.error, o.cached_tokens, o.disagg])


def output_from_list(v: Any) -> EngineOutput:
    """Build an output chunk from its array form."""
    if not isinstance(v, list) or not 1 <= len(v) <= 6:
        raise RuntimeProtocolError("engine output: expected a 1-6 element array")
    n = len(v)
    if n == 1:
        return EngineOutput(v[0])
    if n == 2:
        return EngineOutput(v[0], v[1])
    if n >= 5:
        disagg = v[4]
        if disagg is not None and not isinstance(disagg, dict):
            raise RuntimeProtocolError("engine output: disagg must be an object")
        if n == 5:
            return EngineOutput(v[0], v[1], v[2], v[3], disagg)
        index = v[5]
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise RuntimeProtocolError("engine output: media_index must be a non-negative int")
        return EngineOutput(v[0], v[1], v[2], v[3], disagg, index)
    return EngineOutput(v[0], v[1], v[2], v[3] if n == 4 else None)


def decode_output(data: bytes | memoryview | str) -> EngineOutput:
    """Parse an output chunk written by :func:`encode_output`."""
    return output_from_list(_loads(data))


# --------------------------------------------------------------------------- model card / instance


def model_card_to_dict(m: ModelCard) -> dict[str, Any]:
    """The JSON object form of a model card."""
    return {
        "name": m.name,
        "model_path": m.model_path,
        "context_length": m.context_length,
        "kv_block_size": m.kv_block_size,
        "tokenizer": m.tokenizer,
        "extra": m.extra,
    }


def model_card_from_dict(d: Any) -> ModelCard:
    """Inverse of :func:`model_card_to_dict`."""
    if not isinstance(d, dict):
        raise RuntimeProtocolError("model card: expected an object")
    try:
        return ModelCard(
            name=str(d["name"]),
            model_path=str(d["model_path"]),
            context_length=int(d["context_length"]),
            kv_block_size=int(d["kv_block_size"]),
            tokenizer=str(d.get("tokenizer", "hf")),
            extra=dict(d.get("extra") or {}),
        )
    except KeyError as exc:
        raise RuntimeProtocolError(f"model card: missing field {exc.args[0]!r}") from None


def encode_model_card(m: ModelCard) -> bytes:
    """Serialize a model card."""
    return orjson.dumps(model_card_to_dict(m))


def decode_model_card(data: bytes | str) -> ModelCard:
    """Parse a model card."""
    return model_card_from_dict(_loads(data))


def instance_to_dict(w: WorkerInstance) -> dict[str, Any]:
    """The JSON object form of a worker instance."""
    return {
        "instance_id": w.instance_id,
        "namespace": w.namespace,
        "component": w.component,
        "endpoint": w.endpoint,
        "subject": w.subject,
        "model": model_card_to_dict(w.model),
        **({"features": list(w.features)} if w.features else {}),
    }


def instance_from_dict(d: Any) -> WorkerInstance:
    """Inverse of :func:`instance_to_dict`."""
    if not isinstance(d, dict):
        raise RuntimeProtocolError("worker instance: expected an object")
    try:
        return WorkerInstance(
            instance_id=str(d["instance_id"]),
            namespace=str(d["namespace"]),
            component=str(d["component"]),
            endpoint=str(d["endpoint"]),
            subject=str(d["subject"]),
            model=model_card_from_dict(d["model"]),
            features=tuple(str(f) for f in d.get("features") or ()),
        )
    except KeyError as exc:
        raise RuntimeProtocolError(f"worker instance: missing field {exc.args[0]!r}") from None


def encode_instance(w: WorkerInstance) -> bytes:
    """Serialize a worker instance."""
    return orjson.dumps(instance_to_dict(w))


def decode_instance(data: bytes | str) -> WorkerInstance:
    """Parse a worker instance."""
    return instance_from_dict(_loads(data))


# --------------------------------------------------------------------------- kv events


def kv_events_to_list(events: list[KvEvent]) -> list[Any]:
    """Array form of a batch of KV events."""
    return [[e.kind, e.block_hashes, e.parent_hash] for e in events]


def kv_events_from_list(v: Any) -> list[KvEvent]:
    """Inverse of :func:`kv_events_to_list`."""
    if not isinstance(v, list):
        raise RuntimeProtocolError("kv events: expected an array")
    out: list[KvEvent] = []
    for item in v:
        if (
            not isinstance(item, list)
            or len(item) != 3
            or item[0]
            not in (
                "stored",
                "removed",
                "cleared",
            )
        ):
            raise RuntimeProtocolError(f"kv events: bad event {item!r}")
        out.append(KvEvent(item[0], item[1], item[2]))
    return out


def encode_kv_events(events: list[KvEvent]) -> bytes:
    """Serialize a batch of KV events."""
    return orjson.dumps(kv_events_to_list(events))


def decode_kv_events(data: bytes | str) -> list[KvEvent]:
    """Parse a batch of KV events."""
    return kv_events_from_list(_loads(data))


def _loads(data: bytes | memoryview | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RuntimeProtocolError(f"invalid JSON: {exc}") from None
