"""Framing of the stream messages exchanged between a client and a worker.

Worker -> client, on the per-request inbox subject (first byte = kind):
  ``D<n>|<output>`` the n-th (1, 2, ...) :class:`EngineOutput` (orjson array); costs one
                 credit; the numbering lets the client notice a lost message (e.g. across a
                 nats-server restart) instead of silently returning a stream with holes
  ``K``          keepalive / pong; free
  ``G``          pong for a stream the worker does not know (finished, lost); free
  ``R<reason>``  request refused before it started (draining, overloaded); free
Client -> worker, on the worker's control subject, always with ``reply=<inbox>`` so that a dead
worker is reported at once by the server's no-responders status:
  ``C<n>|<inbox>`` grant n more credits;  ``X|<inbox>`` cancel;  ``P|<inbox>`` ping
Request (client -> worker, on the worker's request subject, ``reply=<inbox>``):
  orjson ``[PROTOCOL_VERSION, window, request_array]``, or with a fourth element, the client's
  *mux subject*, sent only to workers whose discovery record lists :data:`FEATURE_MUX`.

Batched frames (worker -> client, on the mux subject, when the request named one): the data
frames of all of one client's streams produced in one event-loop iteration of the worker, as
entries ``<u8 n><inbox's last token, n bytes><u32 big-endian m><frame, m bytes>``; the client's
inboxes are ``<mux subject minus its last token>.<token>``. One message per iteration instead
of one per token per stream: under load most of the request plane's cost (the worker's
publishes, nats-server's routing, the client's parsing) is per message. Other frames
(keepalive, gone, refused) still go to the inbox itself.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from dgd_runtime.protocol import (
    PreprocessedRequest,
    RuntimeProtocolError,
    request_from_list,
    request_to_list,
)

PROTOCOL_VERSION: Final = 1

FRAME_DATA: Final = 0x44  # b"D"
FRAME_KEEPALIVE: Final = 0x4B  # b"K"
FRAME_REFUSED: Final = 0x52  # b"R"
FRAME_GONE: Final = 0x47  # b"G"

CTL_CREDIT: Final = 0x43  # b"C"
CTL_CANCEL: Final = 0x58  # b"X"
CTL_PING: Final = 0x50  # b"P"

KEEPALIVE: Final = b"K"
GONE: Final = b"G"

FEATURE_MUX: Final = "mux"
"""Listed in a worker's discovery record when it batches frames onto a client's mux subject."""

MUX_SUBJECT_TOKEN: Final = "m"
"""Last token of a client's mux subject (its inboxes end in a number)."""


def data_frame(seq: int, output: bytes) -> bytes:
    """The ``seq``-th data frame of a stream carrying an encoded output."""
    return b"D%d|%b" % (seq, output)


def plain_token(frame: bytes, seq: int) -> int | None:
    """The token of the ``seq``-th data frame when its output is one token and nothing else.

    That is most of a stream (``encode_output`` writes ``[[id]]``); None for any other frame,
    which then takes the full decode.
    """
    head = b"D%d|[[" % seq
    if frame.startswith(head) and frame.endswith(b"]]"):
        digits = frame[len(head) : -2]
        if digits.isdigit():
            return int(digits)
    return None


def split_data_frame(frame: bytes) -> tuple[int, memoryview]:
    """``(seq, encoded output)`` of a data frame."""
    sep = frame.find(b"|", 1)
    if sep < 0:
        raise RuntimeProtocolError("data frame: missing '|'")
    try:
        seq = int(frame[1:sep])
    except ValueError:
        raise RuntimeProtocolError("data frame: bad sequence number") from None
    return seq, memoryview(frame)[sep + 1 :]


def encode_request_envelope(
    request: PreprocessedRequest, window: int, mux_subject: str | None = None
) -> bytes:
    """The request message body (``mux_subject``: where the client takes batched frames)."""
    if mux_subject is None:
        return orjson.dumps([PROTOCOL_VERSION, window, request_to_list(request)])
    return orjson.dumps([PROTOCOL_VERSION, window, request_to_list(request), mux_subject])


def decode_request_envelope(data: bytes) -> tuple[int, PreprocessedRequest, str | None]:
    """``(window, request, mux subject or None)`` from a request message body."""
    try:
        v: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RuntimeProtocolError(f"request envelope: invalid JSON: {exc}") from None
    if not isinstance(v, list) or len(v) not in (3, 4):
        raise RuntimeProtocolError(
            "request envelope: expected [version, window, request] or [..., mux subject]"
        )
    if v[0] != PROTOCOL_VERSION:
        raise RuntimeProtocolError(f"request envelope: unsupported protocol version {v[0]!r}")
    window = v[1]
    if not isinstance(window, int) or window < 1:
        raise RuntimeProtocolError("request envelope: window must be a positive integer")
    mux = v[3] if len(v) == 4 else None
    if mux is not None and (not isinstance(mux, str) or "." not in mux):
        raise RuntimeProtocolError("request envelope: mux subject must be a NATS subject")
    return window, request_from_list(v[2]), mux


def mux_entry(token: bytes, frame: bytes) -> bytes:
    """One entry of a batched-frames message (``token``: the inbox's last token)."""
    return b"%c%b%b%b" % (len(token), token, len(frame).to_bytes(4, "big"), frame)


def split_mux(payload: bytes) -> list[tuple[bytes, bytes]]:
    """``[(inbox token, frame), ...]`` of a batched-frames message."""
    out: list[tuple[bytes, bytes]] = []
    pos, n = 0, len(payload)
    while pos < n:
        k = payload[pos]
        start = pos + 1 + k
        end = start + 4 + int.from_bytes(payload[start : start + 4], "big")
        if start + 4 > n or end > n:
            raise RuntimeProtocolError("batched frames: truncated entry")
        out.append((payload[pos + 1 : start], payload[start + 4 : end]))
        pos = end
    return out


def encode_control(kind: int, inbox: str, amount: int = 0) -> bytes:
    """A control message body."""
    if kind == CTL_CREDIT:
        return b"C%d|%s" % (amount, inbox.encode())
    return bytes((kind, 0x7C)) + inbox.encode()


def decode_control(data: bytes) -> tuple[int, str, int]:
    """``(kind, inbox, amount)`` from a control message body."""
    sep = data.find(b"|")
    if sep < 1:
        raise RuntimeProtocolError("control message: missing '|'")
    kind = data[0]
    amount = int(data[1:sep]) if kind == CTL_CREDIT else 0
    return kind, data[sep + 1 :].decode(), amount
