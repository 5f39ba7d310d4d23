"""The operator's HTTPS webhook server: conversion, validation and defaulting on one port.

An aiohttp server (kopf's admission server cannot answer ConversionReviews) routing each path of
`webhooks.review_handlers` to its pure review function. It is independent of kopf and of any
leader role: every operator replica serves it, and `python -m dgd_operator.admission` runs it
alone (the local control plane, tests).

The serving certificate is a pair of files. The server re-reads them when they change (checked
every `reload_interval` seconds) and new TLS handshakes use the new pair, so a certificate
rotated by the operator (`admission.certificates`) or by cert-manager in a mounted Secret is
picked up without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from dgd_operator import metrics
from dgd_operator.admission.webhooks import BAD_REQUEST, Review, ReviewError, bad_request

log = logging.getLogger(__name__)

# Files of a kubernetes.io/tls Secret (cert-manager adds ca.crt; the operator's own Secret too).
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"

# The API server's requests are small; a large body is not a review.
MAX_BODY = 32 * 1024 * 1024
RELOAD_INTERVAL = 60.0

Handler = Callable[[Mapping[str, Any]], Review]


def _json_response(answer: Mapping[str, Any], status: int = 200) -> web.Response:
    # orjson: a conversion review carries whole objects both ways, and the API server asks
    # for one on every write of a DGD whose field owners use the other version.
    return web.Response(body=orjson.dumps(answer), status=status, content_type="application/json")


def outcome(review: Mapping[str, Any], answer: Mapping[str, Any]) -> tuple[str, bool]:
    """(operation, allowed) of an answered review, for the metrics: an AdmissionReview's
    `request.operation` and `response.allowed`; `CONVERT` and whether the conversion
    succeeded for a ConversionReview."""
    response = answer.get("response") or {}
    if review.get("kind") == "ConversionReview":
        return "CONVERT", (response.get("result") or {}).get("status") == "Success"
    request = review.get("request") or {}
    return str(request.get("operation") or "UNKNOWN"), bool(response.get("allowed"))


@dataclass(frozen=True)
class CertificateFiles:
    """Where the serving certificate lives: `tls.crt` and `tls.key` (and `ca.crt`) in `directory`."""

    directory: Path

    @property
    def cert(self) -> Path:
        """The certificate chain (PEM)."""
        return self.directory / CERT_FILE

    @property
    def key(self) -> Path:
        """The private key (PEM)."""
        return self.directory / KEY_FILE

    @property
    def ca(self) -> Path:
        """The CA that signed it, the caBundle the API server trusts (may be absent)."""
        return self.directory / CA_FILE

    def stamp(self) -> tuple[float, float]:
        """Modification times of the pair: a change means a new certificate."""
        return (self.cert.stat().st_mtime, self.key.stat().st_mtime)


class WebhookServer:
    """HTTPS server answering ConversionReviews and AdmissionReviews (see the module docstring)."""

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        certificate: CertificateFiles,
        *,
        host: str,
        port: int,
        reload_interval: float = RELOAD_INTERVAL,
        reuse_port: bool = False,
    ) -> None:
        self.handlers = dict(handlers)
        self.certificate = certificate
        self.host = host
        self.port = port
        self.reload_interval = reload_interval
        self.reuse_port = reuse_port
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._stamp: tuple[float, float] | None = None
        self._runner: web.AppRunner | None = None
        self._watcher: asyncio.Task[None] | None = None

    def load_certificate(self) -> bool:
        """(Re)load the certificate files when they changed; True when it loaded them."""
        stamp = self.certificate.stamp()
        if stamp == self._stamp:
            return False
        self._ssl.load_cert_chain(self.certificate.cert, self.certificate.key)
        self._stamp = stamp
        return True

    @property
    def ready(self) -> bool:
        """Listening with a certificate loaded (the operator's readiness needs it)."""
        return self._runner is not None and self._stamp is not None

    async def _review(self, request: web.Request) -> web.Response:
        handler = self.handlers[request.path]
        webhook = request.path.lstrip("/")
        started = time.perf_counter()
        try:
            review = orjson.loads(await request.read())
            if not isinstance(review, dict):
                raise ReviewError("the body is not a JSON object")
            answer = handler(review)
        except (ValueError, ReviewError) as exc:
            log.warning("webhook %s: unreadable review: %s", request.path, exc)
            metrics.admission_failed(webhook)
            return _json_response(bad_request(str(exc)), status=BAD_REQUEST)
        except Exception:
            # aiohttp answers 500 and the API server applies the failure policy; count it.
            metrics.admission_failed(webhook)
            raise
        operation, allowed = outcome(review, answer)
        metrics.observe_admission(
            webhook, operation, allowed=allowed, seconds=time.perf_counter() - started
        )
        return _json_response(answer)

    async def start(self) -> None:
        """Load the certificate and start listening (returns once the port is bound)."""
        self.load_certificate()
        app = web.Application(client_max_size=MAX_BODY)
        for path in self.handlers:
            app.router.add_post(path, self._review)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.host, self.port, ssl_context=self._ssl, reuse_port=self.reuse_port
        )
        await site.start()
        self._watcher = asyncio.create_task(self._watch(), name="webhook-certificate-watch")
        log.info("webhook server listening on https://%s:%d", self.host, self.port)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.reload_interval)
            try:
                if self.load_certificate():
                    log.info("webhook server: loaded a new serving certificate")
            except (OSError, ssl.SSLError) as exc:  # half-written files: next round
                log.warning("webhook server: cannot load the certificate yet: %s", exc)

    async def stop(self) -> None:
        """Stop listening (idempotent)."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
