"""Our frontend and KV router in front of two real vLLM workers, checked through HTTP.

The model's weights are random, so the tests assert on what is a function of the engine (token
counts, finish reasons, determinism, cache hits, where requests went), never on text quality.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from tests.engine.support import (
    BLOCK_SIZE,
    MAX_MODEL_LEN,
    MODEL_NAME,
    START_TIMEOUT,
    TEXT_NAMESPACE,
    Deployment,
    engine_core_pid,
    eventually,
    frontend,
    metric,
    wait_models,
)

from dgd_operator.dev.processes import cpu_seconds as process_cpu_seconds
from dgd_runtime.local.nats_server import NatsServer

pytestmark = [pytest.mark.engine, pytest.mark.timeout(int(START_TIMEOUT) + 300)]

TIMEOUT = 120.0
UNSTARTED = 4
"""Requests sent while the victim's engine is frozen (the KV router puts them on it)."""


def completion(dep: Deployment, **body: Any) -> httpx.Response:
    """POST /v1/completions (non-streaming unless ``stream`` is given)."""
    body.setdefault("model", MODEL_NAME)
    return httpx.post(f"{dep.url}/v1/completions", json=body, timeout=TIMEOUT)


def ok(resp: httpx.Response) -> dict[str, Any]:
    """The JSON body of a 200 response."""
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def stream_events(dep: Deployment, path: str, **body: Any) -> list[Any]:
    """Every SSE data payload of a streaming request (``"[DONE]"`` kept as a string)."""
    body.setdefault("model", MODEL_NAME)
    body["stream"] = True
    events: list[Any] = []
    with httpx.stream("POST", f"{dep.url}{path}", json=body, timeout=TIMEOUT) as resp:
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if line.startswith("data: "):
                data = line[len("data: ") :]
                events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


def served_requests(dep: Deployment) -> list[float]:
    """Requests each worker has received so far."""
    return [metric(w.metrics(), "dynamo_component_requests_total") for w in dep.workers]


def unfinished_per_worker(dep: Deployment) -> list[float]:
    """Requests each vLLM engine has accepted and not finished."""
    return [metric(w.metrics(), "dgd_engine_unfinished_requests") for w in dep.workers]


def unfinished(dep: Deployment) -> float:
    """Requests the two vLLM engines have accepted and not finished."""
    return sum(unfinished_per_worker(dep))


@dataclass
class HeldStream:
    """A streaming request whose first event the client has read, held mid-generation: every
    engine core is frozen (SIGSTOP) and the request is unfinished in its engine."""

    response: httpx.Response
    lines: Iterator[str]
    received: list[str]
    worker: int
    """Index of the worker whose engine runs the request."""
    frozen: list[int]
    """Engine-core PIDs still stopped (thawed when the hold ends; a test may thaw or kill one
    sooner and remove it)."""
    baseline: Any
    """What ``before()`` returned just before this request was sent."""


SETTLED_POLLS = 5
"""Unchanged polls, 0.3 s apart, that count as settled: a worker starved of CPU for one poll
interval (CI on 2 cores) would otherwise look settled with its engine's last outputs unread."""


def settled(dep: Deployment) -> None:
    """Wait until the workers have taken in every output their (frozen) engines sent."""
    last: tuple[float, ...] = ()
    unchanged = 0
    deadline = time.monotonic() + 60
    while True:
        texts = [w.metrics() for w in dep.workers]
        now = tuple(metric(t, "vllm:generation_tokens_total") for t in texts) + tuple(
            metric(t, "dgd_engine_unfinished_requests") for t in texts
        )
        unchanged = unchanged + 1 if now == last else 0
        if unchanged >= SETTLED_POLLS:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the workers kept receiving outputs from frozen engines")
        last = now
        time.sleep(0.3)


def cpu_seconds(pids: list[int]) -> float:
    """CPU time the processes ``pids`` have used so far (every thread, user and system)."""
    return sum(process_cpu_seconds(pid) for pid in pids)


def idle(pids: list[int]) -> None:
    """Wait until the processes ``pids`` use no CPU for a second."""
    deadline = time.monotonic() + 120
    last = cpu_seconds(pids)
    while True:
        time.sleep(1.0)
        now = cpu_seconds(pids)
        if now - last < 0.02:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the engines kept working")
        last = now


@contextlib.contextmanager
def held_mid_stream(
    dep: Deployment, body: dict[str, Any], before: Callable[[], Any] = lambda: None
) -> Iterator[HeldStream]:
    """Send the streaming ``body``, read its first event, freeze every engine and hold it there.

    Freezing after the first event is not enough by itself: on a busy machine a hop between
    the engine and the client can lag by as long as the engine takes to finish the request (its
    first event then reaches the client with the last). Such a request has nothing left to
    stop, so it is drained and the request sent again, with a new suffix, up to three times.
    """
    cores = [engine_core_pid(w) for w in dep.workers]
    for attempt in range(3):
        eventually(lambda: unfinished(dep) == 0, 60, "the engines to finish earlier requests")
        baseline = before()
        attempt_body = dict(body, prompt=body["prompt"] + "\n" * attempt)
        frozen: list[int] = []
        try:
            with httpx.stream(
                "POST", f"{dep.url}/v1/completions", json=attempt_body, timeout=TIMEOUT
            ) as resp:
                assert resp.status_code == 200, resp.read()
                lines = resp.iter_lines()
                received = [next(line for line in lines if line.startswith("data: "))]
                for pid in cores:
                    os.kill(pid, signal.SIGSTOP)
                    frozen.append(pid)
                settled(dep)
                running = [i for i, n in enumerate(unfinished_per_worker(dep)) if n > 0]
                assert len(running) <= 1, f"requests unfinished on workers {running}"
                if running:
                    yield HeldStream(resp, lines, received, running[0], frozen, baseline)
                    return
        finally:
            for pid in frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
    pytest.fail("three times the request had finished in its engine before its first event")


def test_streaming_and_non_streaming_agree(deployment: Deployment) -> None:
    prompt = "def fibonacci(n):"
    plain = ok(completion(deployment, prompt=prompt, max_tokens=24, temperature=0, ignore_eos=True))
    choice = plain["choices"][0]
    assert choice["finish_reason"] == "length"
    assert plain["usage"]["completion_tokens"] == 24
    assert plain["usage"]["prompt_tokens"] > 0

    events = stream_events(
        deployment,
        "/v1/completions",
        prompt=prompt,
        max_tokens=24,
        temperature=0,
        ignore_eos=True,
        stream_options={"include_usage": True},
    )
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if e["choices"]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == choice["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert events[-2]["usage"]["completion_tokens"] == 24

    chat = stream_events(
        deployment,
        "/v1/chat/completions",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=8,
        ignore_eos=True,
    )
    assert chat[-1] == "[DONE]"
    assert chat[0]["choices"][0]["delta"]["role"] == "assistant"


def test_same_seed_same_tokens_other_seed_other_tokens(deployment: Deployment) -> None:
    def sample(seed: int) -> str:
        body = ok(
            completion(
                deployment,
                prompt="import os",
                max_tokens=16,
                temperature=0.9,
                top_p=0.95,
                top_k=50,
                seed=seed,
                ignore_eos=True,
            )
        )
        text: str = body["choices"][0]["text"]
        return text

    first = sample(1234)
    assert sample(1234) == first
    assert sample(99) != first


def test_stop_string_and_stop_token_ids(deployment: Deployment) -> None:
    prompt = "class Parser:"
    greedy = ok(
        completion(deployment, prompt=prompt, max_tokens=32, temperature=0, ignore_eos=True)
    )
    text: str = greedy["choices"][0]["text"]
    # A short printable piece of the greedy output, not at its start, as the stop string.
    cut = next(
        (
            k
            for k in range(2, len(text) - 2)
            if text[k : k + 2].isascii()
            and text[k : k + 2].strip()
            and text.find(text[k : k + 2]) == k
        ),
        None,
    )
    assert cut is not None, f"no usable stop string in {text!r}"
    stopped = ok(
        completion(
            deployment, prompt=prompt, max_tokens=32, temperature=0, stop=[text[cut : cut + 2]]
        )
    )
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert stopped["choices"][0]["text"] == text[:cut]

    # Every id is a stop id: vLLM must stop at the first token although EOS is ignored.
    every_id = list(range(1024))
    by_id = ok(
        completion(
            deployment,
            prompt=prompt,
            max_tokens=32,
            temperature=0,
            ignore_eos=True,
            stop_token_ids=every_id,
        )
    )
    assert by_id["choices"][0]["finish_reason"] == "stop"
    assert by_id["usage"]["completion_tokens"] <= 1


def test_repeated_prompt_reports_cached_tokens(deployment: Deployment) -> None:
    prompt = "def cached_prompt_test(a, b):\n    return a * b + 1\n" * 10
    first = ok(completion(deployment, prompt=prompt, max_tokens=2, temperature=0))
    again = ok(completion(deployment, prompt=prompt, max_tokens=2, temperature=0))
    prompt_tokens = first["usage"]["prompt_tokens"]
    assert prompt_tokens > 4 * BLOCK_SIZE
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    # vLLM caches full blocks and always recomputes the last prompt token.
    expected = (prompt_tokens - 1) // BLOCK_SIZE * BLOCK_SIZE
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == expected


def test_prompt_longer_than_max_model_len_is_a_400(deployment: Deployment) -> None:
    resp = completion(deployment, prompt="x " * (MAX_MODEL_LEN + 50), max_tokens=4)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "context_length_exceeded"
    assert unfinished(deployment) == 0


def test_client_disconnect_aborts_the_request_in_the_engine(deployment: Deployment) -> None:
    def totals() -> tuple[float, float]:
        texts = [w.metrics() for w in deployment.workers]
        return (
            sum(metric(t, "dgd_engine_aborted_requests_total") for t in texts),
            sum(metric(t, "vllm:generation_tokens_total") for t in texts),
        )

    max_tokens = MAX_MODEL_LEN - 16
    body = {
        "model": MODEL_NAME,
        "prompt": "while True:",
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
    }
    cores = [engine_core_pid(w) for w in deployment.workers]
    # The engine-core process's CPU per generated token (it schedules every step; a child
    # process runs the model), measured now, on this machine and its current load.
    calibration = 256
    spent = cpu_seconds(cores)
    ok(completion(deployment, prompt="calibrate", max_tokens=calibration, ignore_eos=True))
    per_token = (cpu_seconds(cores) - spent) / calibration
    # The engine is frozen while the client goes away, so it cannot finish the request before
    # the abort reaches it, however the machine schedules the hops in between.
    with held_mid_stream(deployment, body, before=totals) as held:
        aborted_before, generated_before = held.baseline
        remaining = max_tokens - (totals()[1] - generated_before)
        held.response.close()
        eventually(lambda: totals()[0] == aborted_before + 1, 60, "the worker to abort the request")
        spent = cpu_seconds(cores)
    eventually(lambda: unfinished(deployment) == 0, 60, "the worker to drop the request")
    idle(cores)
    aborted_after, generated_after = totals()
    assert aborted_after == aborted_before + 1
    assert generated_after - generated_before < max_tokens
    # The worker dropped the request at once (its own count above); that the abort reached
    # the engine shows in what the engine did after the thaw: a few steps, where generating
    # the rest of the request would cost `remaining` tokens' worth.
    after = cpu_seconds(cores) - spent
    assert after < remaining * per_token / 4, (after, remaining, per_token)


@pytest.fixture
def events_only(deployment: Deployment, nats: NatsServer) -> Iterator[Deployment]:
    """A second frontend on the same workers whose router sees the engines' KV events alone.

    The module's frontend also predicts: a prompt it routed counts as cached on its worker for
    a while, which would send a repeated prefix back to the same worker even if the engines'
    events never matched the router's hashes.
    """
    server, url = frontend(
        "frontend-events-only", nats.url, TEXT_NAMESPACE, DGD_ROUTER_PREDICTED_CACHE_TTL="0"
    )
    server.start()
    try:
        wait_models(url, server, expected_workers=len(deployment.workers))
        yield Deployment(url, server, deployment.workers)
    finally:
        server.stop()


def test_kv_router_sends_a_prefix_to_the_worker_whose_engine_cached_it(
    events_only: Deployment,
) -> None:
    deployment = events_only
    prefixes = (
        "# module alpha\n" + "alpha_value = compute(alpha_value, 1)\n" * 12,
        "# module beta\n" + "beta_items.append(beta_items.pop())\n" * 12,
    )
    # Each prefix is served once, wherever the router puts it: that engine caches it. (No
    # timing games: the requests run one after another, so no load differs between workers.)
    holders = []
    for prefix in prefixes:
        counts = served_requests(deployment)
        ok(completion(deployment, prompt=prefix, max_tokens=1, temperature=0))
        [holder] = [i for i, n in enumerate(served_requests(deployment)) if n > counts[i]]
        holders.append(holder)
    # The KV events travel engine -> worker -> NATS -> router; give them a moment to land.
    time.sleep(1.0)
    # Every continuation goes to the engine that holds its prefix (round-robin or random would
    # miss within three tries each), and that engine reports the prefix as cached.
    for prefix, holder in zip(prefixes, holders, strict=True):
        for turn in range(3):
            counts = served_requests(deployment)
            prompt = prefix + f"print('done {turn}')\n"
            body = ok(completion(deployment, prompt=prompt, max_tokens=1, temperature=0))
            served_by = [i for i, n in enumerate(served_requests(deployment)) if n > counts[i]]
            assert served_by == [holder]
            assert body["usage"]["prompt_tokens_details"]["cached_tokens"] >= 4 * BLOCK_SIZE


def test_an_engine_death_errors_streams_in_progress_and_moves_unstarted_requests(
    deployment: Deployment,
) -> None:
    # Last in this module: it leaves one worker (the module's deployment ends after it).
    # Nothing here races the engine: a frozen (SIGSTOPped) engine core produces nothing, so
    # the stream in progress cannot finish and the requests sent meanwhile cannot start.
    # A unique prefix: the worker streaming it is the only one whose KV router load holds its
    # blocks, so the router sends the followers there too (the victim, once it is frozen).
    prefix = "".join(f"def death_probe_{i}(x):\n    return x * {i} + 7\n" for i in range(16))
    max_tokens = 1024
    body = {
        "model": MODEL_NAME,
        "prompt": prefix + "# stream\n",
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
    }
    pool = ThreadPoolExecutor(UNSTARTED)
    try:
        with held_mid_stream(deployment, body) as held:
            # Both engines are frozen; the one streaming is the victim, the other is thawed
            # (it has nothing in flight).
            v = held.worker
            victim, survivor = deployment.workers[v], deployment.workers[1 - v]
            thawed = engine_core_pid(survivor)
            os.kill(thawed, signal.SIGCONT)
            held.frozen.remove(thawed)
            # Counted from here: the requests sent now, and nothing else.
            base = served_requests(deployment)

            # Requests sent now: those the router puts on the victim are accepted there and
            # cannot start. Wait until every one has been accepted by one of the workers.
            def accepted() -> float:
                now = served_requests(deployment)
                return now[v] - base[v] + now[1 - v] - base[1 - v]

            unstarted = [
                pool.submit(
                    completion,
                    deployment,
                    prompt=prefix + f"# follower {i}\n",
                    max_tokens=8,
                    ignore_eos=True,
                )
                for i in range(UNSTARTED)
            ]
            eventually(lambda: accepted() == UNSTARTED, 60, "every request accepted")
            on_victim = served_requests(deployment)[v] - base[v]
            assert on_victim >= 1, "the router put none of the requests on the frozen engine"

            killed = engine_core_pid(victim)
            os.kill(killed, signal.SIGKILL)
            held.frozen.remove(killed)
            received = held.received + [line for line in held.lines if line]
        # The stream in progress: an error event naming the engine's death, no [DONE].
        tokens = sum(1 for line in received if line.startswith("data: {") and '"text"' in line)
        assert tokens < max_tokens, "the request finished before its engine was frozen"
        assert "data: [DONE]" not in received, received[-3:]
        assert "event: error" in received, received[-3:]
        error = orjson.loads(received[-1][len("data: ") :])["error"]
        assert "engine died" in error["message"], error

        # Every request the dying worker had accepted ran again on the survivor, in full.
        for future in unstarted:
            done = ok(future.result())
            assert done["usage"]["completion_tokens"] == 8
            assert done["choices"][0]["finish_reason"] == "length"
        served = metric(survivor.metrics(), "dynamo_component_requests_total")
        assert served - base[1 - v] == UNSTARTED
    finally:
        pool.shutdown(wait=False, cancel_futures=True)

    # The worker noticed, refused new work and exited non-zero so it is restarted.
    assert victim.wait_exit(120) != 0, victim.log_tail()
    assert "the engine died" in victim.text, victim.log_tail()
    served = metric(survivor.metrics(), "dynamo_component_requests_total")
    for _ in range(3):
        ok(completion(deployment, prompt="after the death", max_tokens=4, ignore_eos=True))
    assert metric(survivor.metrics(), "dynamo_component_requests_total") == served + 3
