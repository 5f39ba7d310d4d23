"""The OpenAI-compatible frontend: routes, preprocessing, streaming, metrics.

Request path: parse + validate the JSON body -> chat template -> tokenize -> `PreprocessedRequest`
-> `backend.generate()` (router + request plane) -> per engine output: incremental detokenize,
stop-string check, one SSE event -> socket. Per-token work is a table lookup, an orjson string
encode and three list appends; the HTTP layer coalesces everything queued in one loop iteration
into a single write.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson
from tokenizers import Tokenizer

from dgd_runtime.frontend.http import ClientGoneError, Connection, Request
from dgd_runtime.frontend.media import MediaLoader
from dgd_runtime.frontend.metrics import FrontendMetrics
from dgd_runtime.frontend.openai import (
    ApiError,
    GenerationParams,
    bad,
    parse_chat_request,
    parse_completion_request,
)
from dgd_runtime.preprocess.chat_template import ChatTemplateError
from dgd_runtime.preprocess.detokenize import (
    ByteLevelDetokenizer,
    byte_table_for,
    make_detokenizer,
)
from dgd_runtime.preprocess.multimodal import (
    MEDIA_PLACEHOLDER,
    MEDIA_PLACEHOLDER_ID,
    MediaInputError,
    expand_placeholders,
)
from dgd_runtime.preprocess.offload import EncodeBatcher
from dgd_runtime.preprocess.stop import StopStringMatcher
from dgd_runtime.preprocess.tokenizer import ModelDirError, ModelPreprocessor, load_preprocessor
from dgd_runtime.protocol import (
    EngineOutput,
    ModelCard,
    NoWorkersError,
    PreprocessedRequest,
    RequestCancelled,
    RequestTooLargeError,
    SamplingOptions,
    WorkerLostError,
)
from dgd_runtime.transport.client import TokenSink

LOG = logging.getLogger(__name__)

JSON: Final = b"application/json"
DONE: Final = b"data: [DONE]\n\n"
CHAT: Final = "chat_completions"
COMPLETIONS: Final = "completions"


class Backend(Protocol):
    """What the frontend needs from the router client."""

    def models(self) -> Sequence[ModelCard]:
        """Models served by at least one live worker."""
        ...

    def generate(
        self, request: PreprocessedRequest, *, sink: TokenSink | None = None
    ) -> AsyncIterator[EngineOutput]:
        """Stream the outputs of `request`; closing the iterator cancels it.

        ``sink``, if given, may be handed the plain tokens after the first output instead of
        the iterator (it returns False to decline one, which the iterator then yields).
        """
        ...


@dataclass
class ServedModel:
    """A model with live workers and its loaded preprocessor."""

    card: ModelCard
    prep: ModelPreprocessor
    context_length: int
    json_name: bytes  # orjson-encoded name, spliced into every chunk


class _StreamFailedError(Exception):
    """The engine stream failed after the response started; carries the SSE error payload."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# Line breaks that JSON may leave unescaped (NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR), in
# UTF-8, with their JSON escapes. Event-stream readers that split lines as str.splitlines
# does (httpx's `aiter_lines`, common in client code) cut an SSE event at any of them.
_RAW_LINE_BREAKS: Final = (
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
)


def sse_json(obj: Any) -> bytes:
    """`obj` as JSON for one SSE `data:` line: no raw line break any reader splits on.

    orjson escapes control characters but not U+0085, U+2028 or U+2029, which generated text
    can contain (a byte-level vocabulary assembles them from single-byte tokens); they are
    written as JSON escapes instead, which decode to the same text.
    """
    data = orjson.dumps(obj)
    if b"\xc2\x85" in data or b"\xe2\x80" in data:
        for raw, escaped in _RAW_LINE_BREAKS:
            data = data.replace(raw, escaped)
    return data


def _prepare_streaming(tokenizer: Tokenizer) -> None:
    """Build the byte table of a byte-level tokenizer and every token's text as SSE JSON
    (~0.5 s and ~6 MiB for a 151k-token vocabulary), so streams never pay for a first sight."""
    table = byte_table_for(tokenizer)
    if table is not None:
        table.encode_all(sse_json)


def _error_event(message: str, code: int) -> bytes:
    body = sse_json(
        {"error": {"message": message, "type": "internal_error", "param": None, "code": code}}
    )
    return b"event: error\ndata: " + body + b"\n\n"


def _bad_media(params: GenerationParams, index: int, error: str | None) -> MediaInputError:
    """The 400 for an engine that could not use media item ``index`` (named by its part)."""
    media = params.media
    param = media[index].param if 0 <= index < len(media) else "messages"
    return MediaInputError(error or "the engine could not use this media item", param)


def _json(obj: Any) -> bytes:
    return orjson.dumps(obj)


class Frontend:
    """HTTP request handler of the frontend (one instance per process)."""

    def __init__(
        self, backend: Backend, *, metrics: FrontendMetrics | None = None, worker_retries: int = 1
    ) -> None:
        self.backend = backend
        self.metrics = metrics or FrontendMetrics()
        self.worker_retries = worker_retries
        self.media_loader: MediaLoader | None = None
        self.encoder = EncodeBatcher()
        self._served: dict[str, ServedModel] = {}
        self._loading: dict[str, asyncio.Task[ServedModel]] = {}
        self._ever_seen: set[str] = set()
        self._routes: dict[tuple[str, str], Callable[[Request, Connection], Awaitable[None]]] = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/completions"): self._completions,
            ("GET", "/v1/models"): self._models,
            ("GET", "/health"): self._health,
            ("GET", "/live"): self._live,
            ("GET", "/metrics"): self._metrics,
        }

    # -- dispatch -----------------------------------------------------------------------------
    async def __call__(self, request: Request, conn: Connection) -> None:
        """Serve one HTTP request."""
        route = self._routes.get((request.method, request.path))
        if route is None:
            if request.method == "GET" and request.path.startswith("/v1/models/"):
                await self._model_detail(request, conn)
                return
            known = any(path == request.path for _, path in self._routes)
            status = 405 if known else 404
            msg = (
                f"method {request.method} not allowed on {request.path}"
                if known
                else f"no route {request.path}"
            )
            self._send_error(conn, ApiError(status, msg, code=status))
            return
        await route(request, conn)

    @staticmethod
    def _send_error(conn: Connection, err: ApiError) -> None:
        headers: tuple[tuple[bytes, bytes], ...] = ()
        if err.retry_after is not None:
            headers = ((b"Retry-After", str(err.retry_after).encode()),)
        conn.send(err.status, _json(err.body()), JSON, headers)

    # -- models -------------------------------------------------------------------------------
    def _live_cards(self) -> dict[str, ModelCard]:
        return {card.name: card for card in self.backend.models()}

    async def resolve_model(self, name: str) -> ServedModel:
        """The served model `name` with its preprocessor, or 404 / 503."""
        cards = self._live_cards()
        card = cards.get(name)
        if card is None:
            if name in self._ever_seen or not cards:
                raise ApiError(
                    503,
                    f"no workers available for model '{name}'",
                    err_type="service_unavailable",
                    code=503,
                    retry_after=1,
                )
            raise ApiError(
                404,
                f"model '{name}' not found; available: {sorted(cards)}",
                param="model",
                code="model_not_found",
                err_type="not_found_error",
            )
        served = self._served.get(name)
        if served is not None and served.card == card:
            return served
        task = self._loading.get(name)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(card))
            self._loading[name] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._loading.pop(name, None)

    async def _load(self, card: ModelCard) -> ServedModel:
        loop = asyncio.get_running_loop()
        try:
            prep = await loop.run_in_executor(None, load_preprocessor, card.model_path)
            # The detokenizer's tables off the event loop too (151k-token vocabularies).
            await loop.run_in_executor(None, _prepare_streaming, prep.tokenizer)
        except ModelDirError as exc:
            raise ApiError(
                500, f"model '{card.name}': {exc}", err_type="internal_error", code=500
            ) from exc
        ctx = card.context_length or prep.context_length or 0
        served = ServedModel(card, prep, ctx, orjson.dumps(card.name))
        self._served[card.name] = served
        self._ever_seen.add(card.name)
        self.metrics.context_length.set(card.name, value=ctx)
        self.metrics.kv_block_size.set(card.name, value=card.kv_block_size)
        return served

    async def warm(self) -> None:
        """Load preprocessors of every currently served model (call after discovery)."""
        for name in list(self._live_cards()):
            try:
                await self.resolve_model(name)
            except ApiError as exc:
                LOG.warning("cannot prepare model %s: %s", name, exc.message)

    async def _models(self, request: Request, conn: Connection) -> None:
        cards = self._live_cards()
        for name in cards:
            self._ever_seen.add(name)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "dgd"}
            for name in sorted(cards)
        ]
        conn.send(200, _json({"object": "list", "data": data}))

    async def _model_detail(self, request: Request, conn: Connection) -> None:
        name = request.path[len("/v1/models/") :]
        ready = name.endswith("/ready")
        if ready:
            name = name[: -len("/ready")]
        card = self._live_cards().get(name)
        if card is None:
            self._send_error(
                conn,
                ApiError(
                    404,
                    f"model '{name}' not found",
                    param="model",
                    code="model_not_found",
                    err_type="not_found_error",
                ),
            )
            return
        if ready:
            conn.send(200, _json({"model": name, "ready": True}))
        else:
            conn.send(
                200,
                _json(
                    {
                        "id": name,
                        "object": "model",
                        "created": 0,
                        "owned_by": "dgd",
                        "context_length": card.context_length,
                    }
                ),
            )

    # -- health and metrics -------------------------------------------------------------------
    def _refresh_model_ready(self) -> dict[str, ModelCard]:
        """Set `model_ready` of every model ever served from the live workers; the live cards."""
        cards = self._live_cards()
        self._ever_seen.update(cards)  # served once: reported 0, not dropped, when workers go
        for name in self._ever_seen:
            self.metrics.model_ready.set(name, value=1.0 if name in cards else 0.0)
        return cards

    async def _health(self, request: Request, conn: Connection) -> None:
        cards = self._refresh_model_ready()
        instances_of = getattr(self.backend, "instances", None)
        instances = [
            {
                "namespace": i.namespace,
                "component": i.component,
                "endpoint": i.endpoint,
                "instance_id": i.instance_id,
                "model": i.model.name,
            }
            for i in (instances_of() if callable(instances_of) else [])
        ]
        if cards:
            conn.send(
                200, _json({"status": "healthy", "models": sorted(cards), "instances": instances})
            )
        else:
            conn.send(
                503,
                _json({"status": "unhealthy", "message": "No endpoints available", "models": []}),
            )

    async def _live(self, request: Request, conn: Connection) -> None:
        conn.send(200, b'{"status":"live","message":"Service is live"}')

    async def _metrics(self, request: Request, conn: Connection) -> None:
        # Readiness is a state, not an event: read it at scrape time, or a scrape between two
        # /health calls would report whatever the last probe saw.
        self._refresh_model_ready()
        conn.send(200, self.metrics.render(), b"text/plain; version=0.0.4; charset=utf-8")

    # -- generation endpoints -----------------------------------------------------------------
    async def _chat(self, request: Request, conn: Connection) -> None:
        await self._generate(request, conn, CHAT)

    async def _completions(self, request: Request, conn: Connection) -> None:
        await self._generate(request, conn, COMPLETIONS)

    async def _generate(self, request: Request, conn: Connection, endpoint: str) -> None:
        model_label = "unknown"
        request_type = "unary"
        try:
            try:
                body = orjson.loads(request.body)
            except orjson.JSONDecodeError as exc:
                raise bad("body", f"request body is not valid JSON: {exc}") from None
            params = (
                parse_chat_request(body) if endpoint == CHAT else parse_completion_request(body)
            )
            request_type = "stream" if params.stream else "unary"
            served = await self.resolve_model(params.model)
            model_label = served.card.name
            if params.media:
                prompt_ids, preq = await self._multimodal_request(served, params)
            else:
                prompt_ids = await self._tokenize(served, params)
                preq = self._engine_request(served, params, prompt_ids)
        except ApiError as err:
            self.metrics.requests_total.inc(
                model_label, endpoint, request_type, "error", err.err_type
            )
            self._send_error(conn, err)
            return
        metrics = self.metrics
        metrics.inflight.inc(model_label)
        metrics.isl.observe(len(prompt_ids), model_label)
        status, error_type = "success", ""
        try:
            await self._run(conn, served, params, preq, endpoint)
        except ApiError as err:
            status, error_type = "error", err.err_type
            self._send_error(conn, err)
        except (asyncio.CancelledError, ClientGoneError):
            status, error_type = "error", "cancelled"
            metrics.disconnected.inc()
            raise
        except _StreamFailedError:
            status, error_type = "error", "internal_error"
        finally:
            metrics.inflight.dec(model_label)
            metrics.requests_total.inc(model_label, endpoint, request_type, status, error_type)

    async def _multimodal_request(
        self, served: ServedModel, params: GenerationParams
    ) -> tuple[list[int], PreprocessedRequest]:
        """Load the media, expand the placeholders, and build a request carrying ``mm``."""
        kinds = served.card.extra.get("media_kinds") or ()
        for part in params.media:
            if part.kind not in kinds:
                raise bad(
                    part.param,
                    f"model '{served.card.name}' does not accept {part.kind} input",
                )
        if self.media_loader is None:
            self.media_loader = MediaLoader()
        try:
            loaded = await self.media_loader.load(params.media)
        except MediaInputError as exc:
            raise bad(exc.param or "messages", str(exc)) from None
        self.metrics.media_items.inc(served.card.name, amount=len(loaded.refs))
        # Engines whose items take a fixed number of tokens say so on the card.
        fixed = served.card.extra.get("media_tokens") or {}
        counts = [
            fixed.get(ref.kind, n)
            for ref, n in zip(loaded.refs, loaded.placeholder_counts, strict=True)
        ]
        prompt_ids = await self._tokenize(served, params, counts)
        preq = self._engine_request(served, params, prompt_ids)
        preq.mm = loaded.refs
        return prompt_ids, preq

    async def _tokenize(
        self, served: ServedModel, params: GenerationParams, media_counts: list[int] | None = None
    ) -> list[int]:
        prep = served.prep
        if media_counts is not None:
            ids = self._render_with_media(served, params, media_counts)
        elif params.prompt_ids is not None:
            ids = params.prompt_ids
        else:
            if params.prompt_text is not None:
                text = params.prompt_text
            else:
                try:
                    text = prep.chat_template.render(
                        params.messages,
                        add_generation_prompt=params.add_generation_prompt,
                        tools=params.tools,
                        extra=params.chat_template_kwargs,
                    )
                except ChatTemplateError as exc:
                    raise bad("messages", str(exc)) from None
            # Raw completion prompts get the tokenizer's BOS etc.; chat templates add their own.
            ids = await self.encoder.encode(
                prep, text, add_special_tokens=params.prompt_text is not None
            )
        ctx = served.context_length
        if ctx:
            if len(ids) >= ctx:
                raise ApiError(
                    400,
                    f"the prompt has {len(ids)} tokens, but the model's context "
                    f"length is {ctx} tokens",
                    param="messages"
                    if params.prompt_ids is None and params.prompt_text is None
                    else "prompt",
                    code="context_length_exceeded",
                )
            room = ctx - len(ids)
            if params.max_tokens is None:
                params.max_tokens = room
            elif params.max_tokens > room:
                raise ApiError(
                    400,
                    f"max_tokens ({params.max_tokens}) + prompt tokens "
                    f"({len(ids)}) exceeds the context length ({ctx})",
                    param="max_tokens",
                    code="context_length_exceeded",
                )
        elif params.max_tokens is None:
            params.max_tokens = 4096
        return ids

    @staticmethod
    def _render_with_media(
        served: ServedModel, params: GenerationParams, media_counts: list[int]
    ) -> list[int]:
        prep = served.prep
        try:
            text = prep.chat_template.render(
                params.messages,
                add_generation_prompt=params.add_generation_prompt,
                tools=params.tools,
                extra=params.chat_template_kwargs,
            )
        except ChatTemplateError as exc:
            raise bad("messages", str(exc)) from None
        pieces = text.split(MEDIA_PLACEHOLDER)
        if len(pieces) != len(media_counts) + 1:
            raise bad("messages", "the chat template dropped or repeated media content parts")
        return expand_placeholders(
            [prep.encode(p, add_special_tokens=False) for p in pieces],
            media_counts,
            MEDIA_PLACEHOLDER_ID,
        )

    @staticmethod
    def _engine_request(
        served: ServedModel, params: GenerationParams, prompt_ids: list[int]
    ) -> PreprocessedRequest:
        sampling = SamplingOptions(
            max_tokens=params.max_tokens,
            min_tokens=params.min_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            seed=params.seed,
            ignore_eos=params.ignore_eos,
            stop_token_ids=list(params.stop_token_ids),
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
        )
        return PreprocessedRequest(
            request_id=uuid.uuid4().hex,
            model=served.card.name,
            token_ids=prompt_ids,
            sampling=sampling,
            eos_token_ids=list(served.prep.eos_token_ids),
        )

    # -- the token loop -------------------------------------------------------------------------
    async def _run(
        self,
        conn: Connection,
        served: ServedModel,
        params: GenerationParams,
        preq: PreprocessedRequest,
        endpoint: str,
    ) -> None:
        t_start = time.perf_counter()
        created = int(time.time())
        chat = endpoint == CHAT
        rid = ("chatcmpl-" if chat else "cmpl-") + preq.request_id
        stream = params.stream
        head = b'{"id":"%s","object":"%s","created":%d,"model":%s,"choices":[' % (
            rid.encode(),
            b"chat.completion.chunk" if chat else b"text_completion",
            created,
            served.json_name,
        )
        if chat:
            first_pre = b"data: " + head + b'{"index":0,"delta":{"role":"assistant","content":'
            tok_pre = b"data: " + head + b'{"index":0,"delta":{"content":'
            tok_suf = b'},"logprobs":null,"finish_reason":null}]}\n\n'
        else:
            first_pre = tok_pre = b"data: " + head + b'{"index":0,"text":'
            tok_suf = b',"logprobs":null,"finish_reason":null}]}\n\n'

        detok = make_detokenizer(served.prep.tokenizer, preq.token_ids, sse_json)
        stopper = StopStringMatcher(params.stop) if params.stop else None
        max_tokens = params.max_tokens or 0
        n_out = 0
        cached: int | None = None
        finish: str | None = None
        pieces: list[str] = []  # non-streaming accumulation
        final_text = ""
        t_first = 0.0
        started = False
        first_event = True
        attempts = 0
        model = served.card.name
        fast = stopper is None
        detok_add = detok.add
        # A token's text ready as JSON (byte-level tokenizers): the common case skips decoding.
        add_encoded = detok.add_encoded if isinstance(detok, ByteLevelDetokenizer) else None
        conn_stream = conn.stream
        dumps = sse_json
        sink: TokenSink | None = None
        if stream and fast and add_encoded is not None:
            encode_token = add_encoded

            def take_token(token_id: int) -> bool:
                # A plain token handed over by the request plane as it arrives (the stream's
                # sink), written here without waking this coroutine; the rest comes below.
                nonlocal n_out, first_pre
                if n_out + 1 >= max_tokens or conn.write_paused or conn.closed:
                    return False
                encoded = encode_token(token_id)
                if encoded is None:
                    return False
                n_out += 1
                if encoded:
                    conn_stream(first_pre, encoded, tok_suf)
                    first_pre = tok_pre
                return True

            sink = take_token

        while True:
            agen = self.backend.generate(preq, sink=sink)
            aclose = getattr(agen, "aclose", None)
            try:
                async for out in agen:
                    ids = out.token_ids
                    reason = out.finish_reason
                    if (
                        reason is None
                        and started
                        and fast
                        and len(ids) == 1
                        and n_out + 1 < max_tokens
                        and out.error is None
                    ):
                        # The common case, kept short: one token, nothing special.
                        n_out += 1
                        if stream:
                            encoded = add_encoded(ids[0]) if add_encoded is not None else None
                            if encoded is None:
                                text = detok_add(ids)
                                encoded = dumps(text) if text else b""
                            if encoded:
                                conn_stream(first_pre, encoded, tok_suf)
                                first_pre = tok_pre
                                if conn.write_paused:
                                    await conn.drain()
                        else:
                            text = detok_add(ids)
                            if text:
                                pieces.append(text)
                        continue
                    if not started:
                        if out.media_index is not None:
                            raise _bad_media(params, out.media_index, out.error)
                        started = True
                        t_first = time.perf_counter()
                        if stream:
                            conn.start_stream()
                    if out.cached_tokens is not None:
                        cached = out.cached_tokens
                    if out.error is not None or reason == "error":
                        raise _StreamFailedError(out.error or "engine error", 500)
                    text = ""
                    if ids:
                        if n_out + len(ids) >= max_tokens:
                            ids = ids[: max_tokens - n_out]
                            finish = "length"
                        if len(ids) == 1 or (not stream and stopper is None):
                            n_out += len(ids)
                            text = detok.add(ids)
                            if stopper is not None:
                                text = stopper.feed(text)
                                if stopper.stopped:
                                    finish = "stop"
                        else:
                            # Several tokens in one engine output: still one SSE event per
                            # token (what clients and Dynamo's frontend do), and a stop string
                            # ends the count at the token that completed it.
                            last_k = len(ids) - 1
                            for k, tid in enumerate(ids):
                                n_out += 1
                                piece = detok.add((tid,))
                                if stopper is not None:
                                    piece = stopper.feed(piece)
                                    if stopper.stopped:
                                        finish = "stop"
                                        text = piece
                                        break
                                if k == last_k:
                                    text = piece
                                elif piece:
                                    if stream:
                                        conn.stream(first_pre, sse_json(piece), tok_suf)
                                        first_pre = tok_pre
                                    else:
                                        pieces.append(piece)
                    if finish is None and reason is not None:
                        finish = "length" if reason == "length" else "stop"
                    if finish is not None:
                        final_text = text
                        break
                    if text:
                        if stream:
                            conn.stream(first_pre, sse_json(text), tok_suf)
                            first_pre = tok_pre
                            if first_event:
                                first_event = False
                                conn.flush()  # the first token: out now, not after the others
                            if conn.write_paused:
                                await conn.drain()
                        else:
                            pieces.append(text)
            except MediaInputError as exc:
                # The media stage failed before anything was sent.
                raise ApiError(
                    400 if exc.param else 502,
                    str(exc),
                    param=exc.param or "messages",
                    code="invalid_media" if exc.param else 502,
                    err_type="invalid_request_error" if exc.param else "internal_error",
                ) from None
            except RequestTooLargeError as exc:
                # Raised before anything is sent, so the client still gets a plain 400.
                raise ApiError(
                    400, f"request too large: {exc}", param="messages", code="request_too_large"
                ) from None
            except (NoWorkersError, WorkerLostError, RequestCancelled) as exc:
                if (
                    not started
                    and attempts < self.worker_retries
                    and not isinstance(exc, NoWorkersError)
                ):
                    attempts += 1
                    continue  # nothing sent yet: try another worker
                if not started:
                    if isinstance(exc, NoWorkersError):
                        raise ApiError(
                            503,
                            f"no workers available for model '{model}'",
                            err_type="service_unavailable",
                            code=503,
                            retry_after=1,
                        ) from None
                    raise ApiError(
                        502, f"worker failed: {exc}", err_type="internal_error", code=502
                    ) from None
                if not stream:
                    raise ApiError(
                        502, f"worker failed: {exc}", err_type="internal_error", code=502
                    ) from None
                self._fail_stream(conn, stream, f"worker failed mid-stream: {exc}", 502)
                raise _StreamFailedError(str(exc), 502) from None
            except _StreamFailedError as exc:
                if not started or not stream:
                    raise ApiError(
                        exc.code, exc.message, err_type="internal_error", code=exc.code
                    ) from None
                self._fail_stream(conn, stream, exc.message, exc.code)
                raise
            finally:
                if aclose is not None:
                    await aclose()
            break

        if finish is None:
            finish = "length" if n_out >= max_tokens else "stop"
        tail = final_text
        if stopper is None:
            tail += detok.flush()
        elif not stopper.stopped:
            tail += stopper.feed(detok.flush())
            tail += stopper.flush()
            if stopper.stopped:
                finish = "stop"
        if not started:
            t_first = time.perf_counter()
        t_end = time.perf_counter()
        usage: dict[str, Any] = {
            "prompt_tokens": len(preq.token_ids),
            "completion_tokens": n_out,
            "total_tokens": len(preq.token_ids) + n_out,
        }
        if cached is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}

        m = self.metrics
        m.ttft.observe(t_first - t_start, model)
        if n_out > 1:
            m.itl.observe_many((t_end - t_first) / (n_out - 1), n_out - 1, model)
        m.duration.observe(t_end - t_start, model)
        m.osl.observe(n_out, model)
        m.output_tokens.inc(model, amount=n_out)
        if cached is not None:
            m.cached_tokens.observe(cached, model)

        fin = b'"%s"' % finish.encode()
        if stream:
            if not started:
                conn.start_stream()
            if chat:
                delta = (b'{"content":' + sse_json(tail) + b"}") if tail else b"{}"
                if first_pre is not tok_pre:
                    delta = b'{"role":"assistant","content":' + sse_json(tail) + b"}"
                last = (
                    b"data: "
                    + head
                    + b'{"index":0,"delta":'
                    + delta
                    + b',"logprobs":null,"finish_reason":'
                    + fin
                    + b"}]}\n\n"
                )
            else:
                last = (
                    b"data: "
                    + head
                    + b'{"index":0,"text":'
                    + sse_json(tail)
                    + b',"logprobs":null,"finish_reason":'
                    + fin
                    + b"}]}\n\n"
                )
            if params.include_usage:
                conn.stream(
                    last, b"data: " + head + b'],"usage":' + orjson.dumps(usage) + b"}\n\n", DONE
                )
            else:
                conn.stream(last, DONE)
            conn.end_stream()
            return
        pieces.append(tail)
        text = "".join(pieces)
        if chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
            }
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        conn.send(
            200,
            orjson.dumps(
                {
                    "id": rid,
                    "object": "chat.completion" if chat else "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [choice],
                    "usage": usage,
                }
            ),
        )

    @staticmethod
    def _fail_stream(conn: Connection, stream: bool, message: str, code: int) -> None:
        if stream:
            conn.stream(_error_event(message, code))
            conn.end_stream()
