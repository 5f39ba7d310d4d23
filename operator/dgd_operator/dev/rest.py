"""A small, typed Kubernetes REST client over ``http.client`` for the dev control plane.

The fake kubelet, CRD installation and readiness checks work on plain JSON dicts. Keeping them off
the generated kubernetes client avoids its import cost and its (slow, untyped) model
deserialisation; the operator itself still uses the real client through ``dgd_operator.controllerkit.kube``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

JsonDict = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ApiError(Exception):
    """A non-2xx answer from the API server, with its status code and decoded body."""

    def __init__(self, status: int, reason: str, body: JsonDict | str, method: str, path: str):
        self.status = status
        self.reason = reason
        self.body = body
        message = body.get("message", "") if isinstance(body, dict) else str(body)[:500]
        super().__init__(f"{method} {path}: {status} {reason}: {message}")


class KubeRest:
    """Thread-safe JSON client for one API server, authenticated by client cert or token.

    Each thread gets its own keep-alive connection. ``watch`` opens a dedicated connection that
    :meth:`close` interrupts, so a watcher thread can be stopped promptly.
    """

    def __init__(
        self,
        server: str,
        *,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        insecure: bool = False,
    ) -> None:
        parsed = urllib.parse.urlsplit(server)
        if parsed.scheme != "https" or not parsed.hostname:
            raise ValueError(f"expected an https:// API server URL, got {server!r}")
        self.server = server.rstrip("/")
        self._host = parsed.hostname
        self._port = parsed.port or 443
        self._timeout = timeout
        self._token = token
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cert_file and key_file:
            ctx.load_cert_chain(str(cert_file), str(key_file))
        self._ctx = ctx
        self._local = threading.local()
        self._watch_socks: set[socket.socket] = set()
        self._conns: set[http.client.HTTPSConnection] = set()
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_kubeconfig(cls, path: Path | str, context: str | None = None) -> KubeRest:
        """Build a client from a kubeconfig that references certificate files or a token."""
        path = Path(path)
        config = yaml.safe_load(path.read_text())
        ctx_name = context or config.get("current-context")
        ctx = _named(config.get("contexts", []), ctx_name)["context"]
        cluster = _named(config.get("clusters", []), ctx["cluster"])["cluster"]
        user = _named(config.get("users", []), ctx["user"])["user"]

        def file_of(value: str | None) -> Path | None:
            if not value:
                return None
            candidate = Path(value)
            return candidate if candidate.is_absolute() else path.parent / candidate

        return cls(
            cluster["server"],
            ca_file=file_of(cluster.get("certificate-authority")),
            cert_file=file_of(user.get("client-certificate")),
            key_file=file_of(user.get("client-key")),
            token=user.get("token"),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
        )

    # -- plumbing ---------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPSConnection:
        if self._closed:
            # Final: http.client would silently reopen a closed connection, and a socket
            # opened now would never be closed (a ResourceWarning, an error in our tests).
            raise ConnectionError("this KubeRest client has been closed")
        conn: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(
                self._host, self._port, context=self._ctx, timeout=self._timeout
            )
            self._local.conn = conn
            with self._lock:
                self._conns.add(conn)
        return conn

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "dgd-dev"}
        if content_type:
            headers["Content-Type"] = content_type
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    @staticmethod
    def _url(path: str, params: Mapping[str, str | int | bool] | None) -> str:
        if not params:
            return path
        encoded = {
            k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()
        }
        return f"{path}?{urllib.parse.urlencode(encoded)}"

    def request_full(
        self,
        method: str,
        path: str,
        body: JsonDict | list[Any] | None = None,
        *,
        params: Mapping[str, str | int | bool] | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, JsonDict, list[str]]:
        """Send one request; return (status, decoded body, warning messages). Raises ApiError.

        Warning messages are the texts of the server's ``Warning`` headers, unquoted.
        """
        url = self._url(path, params)
        payload = None if body is None else json.dumps(body).encode()
        headers = self._headers(content_type if payload is not None else None)
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, url, body=payload, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.HTTPException, ConnectionError, ssl.SSLError, OSError):
                # A keep-alive connection the server closed: reconnect once.
                conn.close()
                self._local.conn = None
                with self._lock:
                    self._conns.discard(conn)
                if attempt == 2:
                    raise
                continue
            warnings = [parse_warning(h) for h in resp.headers.get_all("Warning") or []]
            text = raw.decode("utf-8", "replace")
            try:
                decoded: JsonDict | str = json.loads(text) if text else {}
            except ValueError:
                decoded = text
            if resp.status >= 400:
                raise ApiError(resp.status, resp.reason, decoded, method, path)
            return resp.status, decoded if isinstance(decoded, dict) else {"raw": decoded}, warnings
        raise AssertionError("unreachable")

    def request(
        self,
        method: str,
        path: str,
        body: JsonDict | list[Any] | None = None,
        *,
        params: Mapping[str, str | int | bool] | None = None,
        content_type: str = "application/json",
    ) -> JsonDict:
        """Send one request and return the decoded JSON body. Raises ApiError on >= 400."""
        return self.request_full(method, path, body, params=params, content_type=content_type)[1]

    def get(self, path: str, **params: str | int | bool) -> JsonDict:
        """GET ``path`` with query ``params``."""
        return self.request("GET", path, params=params)

    def post(self, path: str, body: JsonDict, **params: str | int | bool) -> JsonDict:
        """POST (create) ``body`` at ``path``."""
        return self.request("POST", path, body, params=params)

    def put(self, path: str, body: JsonDict, **params: str | int | bool) -> JsonDict:
        """PUT (replace) ``body`` at ``path``."""
        return self.request("PUT", path, body, params=params)

    def patch(
        self,
        path: str,
        body: JsonDict | list[Any],
        content_type: str = MERGE_PATCH,
        **params: str | int | bool,
    ) -> JsonDict:
        """PATCH ``path`` (JSON merge patch unless ``content_type`` says otherwise)."""
        return self.request("PATCH", path, body, params=params, content_type=content_type)

    def delete(
        self, path: str, body: JsonDict | None = None, **params: str | int | bool
    ) -> JsonDict:
        """DELETE ``path`` with optional DeleteOptions ``body``."""
        return self.request("DELETE", path, body, params=params)

    def exists(self, path: str) -> bool:
        """True if GET ``path`` succeeds, False on 404."""
        try:
            self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def watch(
        self,
        path: str,
        resource_version: str,
        timeout_seconds: int = 60,
        **params: str | int | bool,
    ) -> Iterator[JsonDict]:
        """Stream watch events ``{"type": ..., "object": ...}`` until the server ends the watch.

        Raises ApiError(410) when ``resource_version`` is too old; the caller relists.
        """
        query: dict[str, str | int | bool] = {
            "watch": True,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": timeout_seconds,
            **params,
        }
        conn = http.client.HTTPSConnection(
            self._host, self._port, context=self._ctx, timeout=timeout_seconds + 30
        )
        try:
            conn.request("GET", self._url(path, query), headers=self._headers(None))
            resp = conn.getresponse()
            if resp.status >= 400:
                raw = resp.read().decode("utf-8", "replace")
                try:
                    body: JsonDict | str = json.loads(raw)
                except ValueError:
                    body = raw
                raise ApiError(resp.status, resp.reason, body, "WATCH", path)
            sock = conn.sock
            if sock is not None:
                with self._lock:
                    if self._closed:
                        return
                    self._watch_socks.add(sock)
            try:
                while True:
                    line = resp.readline()
                    if not line:
                        return
                    event: JsonDict = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object", {})
                        raise ApiError(
                            int(status.get("code", 500)),
                            str(status.get("reason", "")),
                            status,
                            "WATCH",
                            path,
                        )
                    yield event
            finally:
                if sock is not None:
                    with self._lock:
                        self._watch_socks.discard(sock)
        except (OSError, http.client.HTTPException, ValueError):
            if self._closed:
                return
            raise
        finally:
            conn.close()

    def close(self) -> None:
        """Interrupt running watches and close every connection. The client is unusable
        afterwards (requests raise ConnectionError)."""
        with self._lock:
            self._closed = True
            socks = list(self._watch_socks)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            conn.close()
        self._local.conn = None


_WARNING = re.compile(r'^\d{3} \S+ "((?:[^"\\]|\\.)*)"')


def parse_warning(header: str) -> str:
    """The text of an RFC 7234 ``Warning`` header (``299 - "text"``), unescaped."""
    match = _WARNING.match(header.strip())
    if not match:
        return header.strip()
    return re.sub(r"\\(.)", r"\1", match.group(1))


def _named(items: list[JsonDict], name: str | None) -> JsonDict:
    for item in items:
        if item.get("name") == name:
            return item
    raise ValueError(f"kubeconfig has no entry named {name!r}")
