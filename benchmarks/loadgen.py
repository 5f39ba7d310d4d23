"""Closed-loop streaming load generator for OpenAI-compatible chat endpoints (loopback only).

C concurrent workers each send a streaming chat completion, read it to `[DONE]`, and send the
next, until N requests completed. The client is a raw asyncio socket reader with a minimal
HTTP/1.1 + chunked + SSE parser, so it spends as little of the shared CPU as possible and
treats every server identically.

Definitions (same as the Dynamo reference measurements): TTFT = send -> first SSE event with
non-empty `delta.content`; ITL = (t_last_content - t_first_content) / (completion_tokens - 1)
per request; output tokens from the final `usage` chunk; throughput = completed / wall time.
CPU seconds of given PIDs come from /proc/<pid>/stat (all threads), machine busy from /proc/stat.

    python benchmarks/loadgen.py --url http://127.0.0.1:8000 --concurrency 1,8,64 --osl 128
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import orjson

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Common English words: one BPE token each (with the leading space) in GPT-2-style
# vocabularies, so --isl-words 96 gives ~110 prompt tokens after the chat template.
WORDS = (
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "was",
    "on",
    "be",
    "by",
    "at",
)


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all its threads) in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all cores)."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLK_TCK


def make_prompt(index: int, words: int) -> str:
    """A unique prompt (no prefix reuse across requests): `[index] word word ...`."""
    return f"[{index}] " + " ".join(WORDS[(index + i) % len(WORDS)] for i in range(words))


@dataclass
class RequestResult:
    """Timing of one request (seconds, relative to its send)."""

    ok: bool
    ttft: float = 0.0
    e2e: float = 0.0
    itl: float = 0.0
    tokens: int = 0
    chunks: int = 0
    error: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    """``usage.prompt_tokens_details.cached_tokens`` (prefix-cache hits the server reported)."""


class _Stream:
    """One HTTP/1.1 connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


async def _connect(host: str, port: int) -> _Stream:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    return _Stream(reader, writer)


async def _one_request(
    conn: _Stream,
    host: str,
    path: str,
    body: bytes,
    keep_alive: bool,
) -> RequestResult:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    ).encode()
    t0 = time.perf_counter()
    conn.writer.write(head + body)
    reader = conn.reader
    status_head = await reader.readuntil(b"\r\n\r\n")
    status = int(status_head[9:12])
    lower = status_head.lower()
    if status != 200:
        return RequestResult(False, error=f"HTTP {status}: {status_head[:200]!r}")
    chunked = b"transfer-encoding: chunked" in lower
    buf = b""
    t_first = t_last = 0.0
    tokens = 0
    prompt_tokens = cached_tokens = 0
    chunks = 0
    done = False
    error = ""
    while not done:
        if chunked:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.strip().split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            data = await reader.readexactly(size + 2)
            buf += data[:-2]
        else:
            data = await reader.read(65536)
            if not data:
                break
            buf += data
        now = time.perf_counter()
        while True:
            end = buf.find(b"\n\n")
            if end == -1:
                break
            event, buf = buf[:end], buf[end + 2 :]
            if event.startswith(b"data: [DONE]"):
                done = True
                break
            if event.startswith(b"event: error"):
                error = event.decode(errors="replace")
                continue
            if b'"usage"' in event and b'"choices":[]' in event:
                usage = orjson.loads(event[6:])["usage"]
                tokens = int(usage.get("completion_tokens") or 0)
                prompt_tokens = int(usage.get("prompt_tokens") or 0)
                details = usage.get("prompt_tokens_details") or {}
                cached_tokens = int(details.get("cached_tokens") or 0)
                continue
            # Non-empty content: `"content":"` followed by something other than the closing quote.
            pos = event.find(b'"content":"')
            if (pos != -1 and event[pos + 11 : pos + 12] != b'"') or (
                b'"text":"' in event and b'"text":""' not in event
            ):
                if not t_first:
                    t_first = now
                t_last = now
                chunks += 1
    if done and chunked:
        # Consume the rest of the body up to the terminating zero-size chunk, so the next
        # request on a kept-alive connection starts at a status line.
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    e2e = time.perf_counter() - t0
    if error or not done:
        return RequestResult(False, error=error or "stream ended without [DONE]")
    itl = (t_last - t_first) / (tokens - 1) if tokens > 1 else 0.0
    return RequestResult(
        True,
        ttft=t_first - t0 if t_first else e2e,
        e2e=e2e,
        itl=itl,
        tokens=tokens,
        chunks=chunks,
        prompt_tokens=prompt_tokens,
        cached_tokens=cached_tokens,
    )


@dataclass
class LevelResult:
    """Aggregates of one concurrency level."""

    concurrency: int
    requests: int
    errors: int
    wall_s: float
    req_s: float
    out_tok_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_mean_ms: float
    itl_p99_ms: float
    e2e_p50_ms: float
    content_chunks_per_req: float = 0.0
    cpu_ms_per_req: dict[str, float] = field(default_factory=dict)
    machine_busy_pct: float = 0.0
    first_error: str = ""


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_level(
    url: str,
    model: str,
    concurrency: int,
    total: int,
    osl: int,
    isl_words: int,
    new_conn: bool,
    pids: dict[str, int],
    warmup: int = 16,
    index_base: int = 0,
) -> LevelResult:
    """Run one closed-loop level: `total` requests with `concurrency` in flight."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing non-loopback URL {url}")
    path = "/v1/chat/completions"
    counter = [index_base]

    def body() -> bytes:
        counter[0] += 1
        return orjson.dumps(
            {
                "model": model,
                "messages": [{"role": "user", "content": make_prompt(counter[0], isl_words)}],
                "max_tokens": osl,
                "stream": True,
                "stream_options": {"include_usage": True},
                "ignore_eos": True,
            }
        )

    async def worker(n_requests: list[int], results: list[RequestResult]) -> None:
        conn: _Stream | None = None
        try:
            while n_requests[0] > 0:
                n_requests[0] -= 1
                if conn is None:
                    conn = await _connect(host, port)
                try:
                    res = await _one_request(conn, host, path, body(), keep_alive=not new_conn)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    res = RequestResult(False, error=repr(exc))
                results.append(res)
                if new_conn or not res.ok:
                    conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    warm: list[RequestResult] = []
    await asyncio.gather(
        *(
            worker([warmup // min(concurrency, warmup) or 1], warm)
            for _ in range(min(concurrency, warmup))
        )
    )
    results: list[RequestResult] = []
    remaining = [total]
    pids = {**pids, "client": os.getpid()}
    cpu0 = {name: proc_cpu_seconds(pid) for name, pid in pids.items()}
    busy0 = machine_busy_seconds()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(remaining, results) for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    busy = machine_busy_seconds() - busy0
    cpu = {name: proc_cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
    ok = [r for r in results if r.ok]
    errors = [r for r in results if not r.ok]
    n = max(len(ok), 1)
    return LevelResult(
        concurrency=concurrency,
        requests=len(ok),
        errors=len(errors),
        wall_s=wall,
        req_s=len(ok) / wall,
        out_tok_s=sum(r.tokens for r in ok) / wall,
        ttft_p50_ms=_pct([r.ttft for r in ok], 0.5) * 1e3,
        ttft_p99_ms=_pct([r.ttft for r in ok], 0.99) * 1e3,
        itl_mean_ms=(statistics.fmean([r.itl for r in ok]) if ok else 0.0) * 1e3,
        itl_p99_ms=_pct([r.itl for r in ok], 0.99) * 1e3,
        e2e_p50_ms=_pct([r.e2e for r in ok], 0.5) * 1e3,
        content_chunks_per_req=sum(r.chunks for r in ok) / n,
        cpu_ms_per_req={k: v * 1e3 / n for k, v in cpu.items()},
        machine_busy_pct=100.0 * busy / (wall * (os.cpu_count() or 1)),
        first_error=errors[0].error if errors else "",
    )


async def discover_model(url: str) -> str:
    """The first model id listed by GET /v1/models."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    writer.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    body = data.split(b"\r\n\r\n", 1)[1]
    if b"chunked" in data.split(b"\r\n\r\n", 1)[0].lower():
        size, rest = body.split(b"\r\n", 1)
        body = rest[: int(size, 16)]
    return str(orjson.loads(body)["data"][0]["id"])


def main() -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", default=None, help="default: first entry of /v1/models")
    ap.add_argument("--concurrency", default="1,8,64")
    ap.add_argument("--osl", type=int, default=128)
    ap.add_argument("--isl-words", type=int, default=96)
    ap.add_argument("--requests-per-worker", type=int, default=16)
    ap.add_argument("--min-requests", type=int, default=200)
    ap.add_argument("--new-conn", action="store_true", help="new TCP connection per request")
    ap.add_argument("--pids", default="", help="name=pid,... processes whose CPU to measure")
    ap.add_argument("--json", default=None, help="write results here")
    args = ap.parse_args()
    pids = {k: int(v) for k, v in (p.split("=") for p in args.pids.split(",") if p)}

    async def run() -> list[LevelResult]:
        model = args.model or await discover_model(args.url)
        out = []
        for c in (int(x) for x in args.concurrency.split(",")):
            total = max(args.min_requests, c * args.requests_per_worker)
            res = await run_level(
                args.url, model, c, total, args.osl, args.isl_words, args.new_conn, pids
            )
            print(orjson.dumps(asdict(res)).decode(), flush=True)
            out.append(res)
        return out

    try:
        import uvloop

        results = uvloop.run(run())
    except ImportError:
        results = asyncio.run(run())
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps([asdict(r) for r in results], option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
