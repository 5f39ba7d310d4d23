"""The webhook server counts what it answers: requests by webhook, operation and verdict, denials,
latency, and reviews it could not answer, as the operator's /metrics exposes them."""

from __future__ import annotations

import contextlib
import socket
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tests.fixtures.dgd import DGD

from dgd_operator import metrics
from dgd_operator.admission import certificates
from dgd_operator.admission.review import AdmissionPolicy
from dgd_operator.admission.server import WebhookServer, outcome
from dgd_operator.admission.webhooks import review_handlers

pytestmark = pytest.mark.unit

UID = "705ab4f5-6393-11e8-b7cc-42010a800002"


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _review(operation: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "operation": operation,
            "userInfo": {"username": "alice"},
            "object": body,
        },
    }


def _graph(*, valid: bool) -> dict[str, Any]:
    doc = DGD("g", namespace="team-a").backend("vllm").frontend().worker("decode").gpus(1)
    built = doc.engine("vllm").build()
    if not valid:
        built["spec"]["services"]["decode"]["resources"]["limits"]["gpu"] = "0.5"
    return built


def _samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition /metrics serves, by (name, sorted labels)."""
    text = generate_latest(metrics.REGISTRY).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _delta(before: dict[Any, float], after: dict[Any, float], name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.mark.parametrize(
    ("review", "answer", "expected"),
    [
        (_review("CREATE", {}), {"response": {"allowed": True}}, ("CREATE", True)),
        (_review("UPDATE", {}), {"response": {"allowed": False}}, ("UPDATE", False)),
        (
            {"kind": "ConversionReview", "request": {}},
            {"response": {"result": {"status": "Failure"}}},
            ("CONVERT", False),
        ),
        (
            {"kind": "ConversionReview", "request": {}},
            {"response": {"result": {"status": "Success"}}},
            ("CONVERT", True),
        ),
    ],
)
def test_outcome(review: dict[str, Any], answer: dict[str, Any], expected: Any) -> None:
    assert outcome(review, answer) == expected


async def test_served_reviews_are_counted(tmp_path: Path) -> None:
    files = certificates.write_self_signed(tmp_path, ["127.0.0.1"])
    handlers = review_handlers(AdmissionPolicy(), origin_version="1.5.0")
    server = WebhookServer(handlers, files, host="127.0.0.1", port=_free_port())
    before = _samples()
    await server.start()
    try:
        assert server.ready
        trust = ssl.create_default_context(cadata=files.ca.read_text())
        base = f"https://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as http:
            for body in (
                _review("CREATE", _graph(valid=True)),
                _review("CREATE", _graph(valid=False)),
            ):
                async with http.post(f"{base}/validate-dgd", json=body) as reply:
                    assert reply.status == 200
            async with http.post(f"{base}/mutate", json=_review("CREATE", _graph(valid=True))):
                pass
            async with http.post(f"{base}/validate-dgd", data=b"[1]") as reply:
                assert reply.status == 400
    finally:
        await server.stop()
    assert not server.ready
    after = _samples()
    requests = "dgd_operator_webhook_requests_total"
    for allowed in ("true", "false"):
        assert (
            _delta(
                before, after, requests, webhook="validate-dgd", operation="CREATE", allowed=allowed
            )
            == 1
        )
    assert (
        _delta(before, after, requests, webhook="mutate", operation="CREATE", allowed="true") == 1
    )
    denials = "dgd_operator_webhook_denials_total"
    assert _delta(before, after, denials, webhook="validate-dgd", operation="CREATE") == 1
    latency = "dgd_operator_webhook_duration_seconds_count"
    assert _delta(before, after, latency, webhook="validate-dgd") == 2
    assert _delta(before, after, "dgd_operator_webhook_errors_total", webhook="validate-dgd") == 1
