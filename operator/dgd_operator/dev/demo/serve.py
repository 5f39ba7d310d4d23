"""The demo's serving part: stream a chat completion through the frontend Service, then delete
one decode worker pod and show its Deployment replacing it while a request is served.

The request goes where the Service routes: the first ready address of the frontend Service's
EndpointSlices, moved to the loopback address the pod's processes listen on
(:func:`dgd_operator.dev.kubelet.loopback_address`).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from dgd_operator.dev.demo.graph import DemoError, Graph, say
from dgd_operator.dev.kubelet import loopback_address
from dgd_operator.dev.rest import JsonDict, KubeRest

FRONTEND_TYPE = "frontend"
COMPONENT_TYPE_LABEL = "nvidia.com/dynamo-component-type"
COMPONENT_LABEL = "nvidia.com/dynamo-component"
PROMPT = "In one sentence, what does a disaggregated inference graph do?"


@dataclass
class StreamResult:
    """One streamed completion: its text, tokens, and timings in seconds."""

    text: str
    tokens: int
    ttft: float
    total: float
    error: str = ""

    def summary(self) -> str:
        """``TTFT 41 ms, 64 tokens in 0.52 s (123.4 tokens/s)``."""
        decode = max(self.total - self.ttft, 1e-9)
        rate = (self.tokens - 1) / decode if self.tokens > 1 else 0.0
        return (
            f"TTFT {self.ttft * 1000:.0f} ms, {self.tokens} tokens in {self.total:.2f} s "
            f"({rate:.1f} tokens/s after the first)"
        )


def frontend_url(rest: KubeRest, graph: Graph) -> str | None:
    """``http://<loopback>:<port>`` of a ready endpoint of the graph's frontend Service."""
    services = rest.get(f"/api/v1/namespaces/{graph.namespace}/services").get("items", [])
    for service in services:
        labels = service["metadata"].get("labels") or {}
        if labels.get(COMPONENT_TYPE_LABEL) != FRONTEND_TYPE:
            continue
        name = service["metadata"]["name"]
        slices = rest.get(
            f"/apis/discovery.k8s.io/v1/namespaces/{graph.namespace}/endpointslices",
            labelSelector=f"kubernetes.io/service-name={name}",
        ).get("items", [])
        for item in slices:
            ports = [p.get("port") for p in item.get("ports") or [] if p.get("port")]
            for endpoint in item.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") and ports:
                    return f"http://{loopback_address(endpoint['addresses'][0])}:{ports[0]}"
    return None


def served_model(url: str) -> str:
    """The first model the frontend lists (what the workers registered)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("GET", "/v1/models")
        data = json.loads(conn.getresponse().read() or b"{}")
    finally:
        conn.close()
    models = [m.get("id") for m in data.get("data") or []]
    if not models:
        raise DemoError("the frontend lists no model (no worker registered)")
    return str(models[0])


def stream_chat(
    url: str, model: str, prompt: str, max_tokens: int, on_text: Callable[[str], None]
) -> StreamResult:
    """POST a streaming chat completion; ``on_text`` gets each piece of text as it arrives."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": True,
        "seed": 7,
    }
    began = time.monotonic()
    ttft = 0.0
    tokens = 0
    text: list[str] = []
    error = ""
    try:
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=json.dumps(body),
            headers={"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        if response.status != 200:
            return StreamResult("", 0, 0.0, time.monotonic() - began, f"HTTP {response.status}")
        while True:
            line = response.readline()
            if not line:
                break
            data = line.decode().strip()
            if not data.startswith("data: "):
                continue
            payload = data[len("data: ") :]
            if payload == "[DONE]":
                break
            event = json.loads(payload)
            if "error" in event:
                error = str(event["error"].get("message", event["error"]))
                break
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece:
                    if not tokens:
                        ttft = time.monotonic() - began
                    tokens += 1
                    text.append(piece)
                    on_text(piece)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        error = str(exc) or type(exc).__name__
    finally:
        conn.close()
    return StreamResult("".join(text), tokens, ttft, time.monotonic() - began, error)


def _pods(rest: KubeRest, graph: Graph) -> list[JsonDict]:
    items = rest.get(f"/api/v1/namespaces/{graph.namespace}/pods").get("items", [])
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _is_ready(pod: JsonDict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", []) or []
    )


def decode_worker(pods: list[JsonDict]) -> JsonDict | None:
    """A ready worker pod that decodes (an aggregated worker or a decode worker, not prefill)."""
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        labels = pod["metadata"].get("labels") or {}
        kind = labels.get(COMPONENT_TYPE_LABEL, "")
        name = labels.get(COMPONENT_LABEL, "").lower()
        if kind in ("worker", "decode", "main") and "prefill" not in name and _is_ready(pod):
            return pod
    return None


def _controller(pod: JsonDict) -> tuple[str, str]:
    """(kind, uid) of the pod's controlling owner, e.g. its ReplicaSet or StatefulSet."""
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("kind", "")), str(ref.get("uid", ""))
    return "", ""


def _wait_url(rest: KubeRest, graph: Graph, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        url = frontend_url(rest, graph)
        if url:
            return url
        if time.monotonic() > deadline:
            raise DemoError("the frontend Service got no ready endpoint")
        time.sleep(0.5)


def serve_and_disrupt(rest: KubeRest, graph: Graph, timeout: float = 120.0) -> None:
    """Stream one answer, delete a decode worker pod, serve a request meanwhile, and wait
    for the replacement pod to be Ready; prints each step. DemoError if no answer came."""
    url = _wait_url(rest, graph, 30.0)
    model = served_model(url)
    say(f"Streaming a chat completion through the frontend Service ({url}, model {model}):")
    say(f"  > {PROMPT}")
    print("  < ", end="", flush=True)
    result = stream_chat(url, model, PROMPT, 48, lambda piece: print(piece, end="", flush=True))
    print(flush=True)
    if result.error or not result.tokens:
        raise DemoError(f"the streamed request failed: {result.error or 'no tokens'}")
    say(f"{result.summary()}")
    say()
    victim = decode_worker(_pods(rest, graph))
    if victim is None:
        say("No ready decode worker pod to delete; skipping the failure part.")
        return
    name = victim["metadata"]["name"]
    owner = (victim["metadata"].get("labels") or {}).get(COMPONENT_LABEL, "?")
    controller = _controller(victim)
    # A ReplicaSet's pods are the Deployment's; a StatefulSet recreates the same pod name.
    workload = "Deployment" if controller[0] == "ReplicaSet" else controller[0] or "controller"
    before = {p["metadata"]["uid"] for p in _pods(rest, graph)}
    say(f"Deleting decode worker pod {name} (component {owner}) ...")
    began = time.monotonic()
    rest.delete(f"/api/v1/namespaces/{graph.namespace}/pods/{name}", {"gracePeriodSeconds": 0})
    deadline = began + timeout
    served: StreamResult | None = None
    replacement = ""
    while time.monotonic() < deadline:
        if served is None or served.error:
            attempt = stream_chat(url, model, "Are you still there?", 16, lambda _piece: None)
            if not attempt.error and attempt.tokens:
                served = attempt
                say(
                    f"  meanwhile: a request was served {time.monotonic() - began:.1f}s after "
                    f"the delete ({attempt.tokens} tokens: {attempt.text.strip()[:60]!r})"
                )
        fresh = [
            p
            for p in _pods(rest, graph)
            if _controller(p) == controller and p["metadata"]["uid"] not in before and _is_ready(p)
        ]
        if fresh and not replacement:
            replacement = fresh[0]["metadata"]["name"]
            say(
                f"  the {workload} replaced it: {replacement} is Ready "
                f"{time.monotonic() - began:.1f}s after the delete"
            )
        if replacement and served is not None:
            break
        time.sleep(0.5)
    if not replacement:
        raise DemoError(f"no Ready replacement for {name} within {timeout:g}s")
    if served is None:
        raise DemoError("no request was served after the worker pod was deleted")
