"""The part of the kubelet's HTTPS API that `kubectl logs` needs, for executed pods.

`kubectl logs POD` asks the API server, which dials the node's kubelet at the node's preferred
address and ``status.daemonEndpoints.kubeletEndpoint.Port`` and GETs
``/containerLogs/<namespace>/<pod>/<container>`` (query: ``follow``, ``tailLines``,
``limitBytes``, ``previous``, ``timestamps``, ``sinceSeconds``). Executing nodes therefore
advertise ``127.0.0.1`` as their Hostname address (the API server's first preferred type) and
the port of this server. It serves TLS with a self-signed certificate: the API server does not
verify kubelet certificates unless ``--kubelet-certificate-authority`` is set (it is not). The
API server authenticates to us with its client certificate; we do not check it (loopback only).
Only ``follow``, ``tailLines`` and ``limitBytes`` are honoured; other paths answer 404.
"""

from __future__ import annotations

import http.server
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from dgd_operator import certs

# (namespace, pod, container) -> the log file, or None; and "does the pod still exist?"
LogFinder = Callable[[str, str, str], "Path | None"]


def tail_bytes(data: bytes, lines: int | None) -> bytes:
    """The last ``lines`` lines of ``data`` (all of it when None)."""
    if lines is None:
        return data
    if lines <= 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


class KubeletApi:
    """A threaded HTTPS server on 127.0.0.1 (free port) answering ``/containerLogs``."""

    def __init__(self, find_log: LogFinder, alive: Callable[[str, str], bool]) -> None:
        self.find_log = find_log
        self.alive = alive
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                api.serve(self)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        issued = certs.serving_certificate(["127.0.0.1", "localhost"], days=30)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            issued.write(cert, key)
            context.load_cert_chain(cert, key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dgd-fake-kubelet-api", daemon=True
        )
        self._stopping = threading.Event()

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving (followers end within a poll interval)."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def serve(self, request: http.server.BaseHTTPRequestHandler) -> None:
        """Answer one GET (see the module doc)."""
        url = urlsplit(request.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "containerLogs":
            request.send_error(404, "only /containerLogs/<ns>/<pod>/<container> is served")
            return
        _, namespace, pod, container = parts
        path = self.find_log(namespace, pod, container)
        if path is None or not path.exists():
            request.send_error(
                404, f"no log for {namespace}/{pod}/{container}: not executed by this kubelet"
            )
            return
        query = parse_qs(url.query)
        follow = query.get("follow", ["false"])[0] == "true"
        tail = int(query["tailLines"][0]) if "tailLines" in query else None
        limit = int(query["limitBytes"][0]) if "limitBytes" in query else None
        request.send_response(200)
        request.send_header("Content-Type", "text/plain")
        request.send_header("Transfer-Encoding", "chunked")
        request.end_headers()
        sent = 0

        def send(data: bytes) -> bool:
            nonlocal sent
            if limit is not None:
                data = data[: max(0, limit - sent)]
            if data:
                request.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                request.wfile.flush()
                sent += len(data)
            return limit is None or sent < limit

        try:
            with path.open("rb") as handle:
                more = send(tail_bytes(handle.read(), tail))
                while more and follow and not self._stopping.is_set():
                    chunk = handle.read(65536)
                    if chunk:
                        more = send(chunk)
                    elif not self.alive(namespace, pod):
                        break
                    else:
                        time.sleep(0.3)
            request.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
