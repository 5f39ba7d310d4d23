"""The production Kubernetes client: a small async adapter over aiohttp implementing `KubeAPI`.

Why not the official `kubernetes` client or lightkube:
- the official client is synchronous; running it in threads costs a thread hop per request and
  its models are slow to (de)serialise, which matters for the 200-DGD benchmark;
- kopf already runs on aiohttp and logs in through `ConnectionInfo`; reusing those credentials
  means one login path and no second HTTP stack;
- what the operator needs is small: GET, LIST, server-side apply (a `PATCH` with
  `application/apply-patch+yaml`, `fieldManager=dgd-operator`, `force=true`), JSON merge patch,
  DELETE with a UID precondition, and POST for Events. Manifests stay plain dicts end to end.

Errors are typed (`kubeapi.NotFoundError`, `ConflictError`, `InvalidError`, `TransientError`) so
the reconciler can tell "fix your spec" from "try again later". Kinds are resolved through a
`kubeapi.Kinds` registry the caller passes in (its CRDs on top of the built-in kinds). Every
request is counted by verb in `dgd_operator.metrics.API_REQUESTS`.

Only the kit and `dgd_operator.main` import this module (import-linter); reconcile code sees the
`KubeAPI` Protocol.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from dgd_operator import metrics
from dgd_operator.controllerkit.decoding import Decode
from dgd_operator.controllerkit.kubeapi import (
    ApiError,
    ConflictError,
    Kinds,
    Manifest,
    NotFoundError,
    TransientError,
    error_for,
)

# Requests one client keeps in flight at once: the reconcile applies a DGD's children
# concurrently, and several workers do so at the same time; this keeps the API server from
# being flooded (and stays below the connection pool's limit).
MAX_IN_FLIGHT_REQUESTS = 16


def _api_error(status: int, text: str) -> ApiError:
    """The typed error for a failed request's answer (a Status object, or any text)."""
    try:
        decoded = orjson.loads(text)
    except orjson.JSONDecodeError:
        decoded = {}
    return error_for(status, decoded if isinstance(decoded, dict) else {}, text)


@dataclass(frozen=True)
class Credentials:
    """How to reach and authenticate to the API server (a subset of kopf's ConnectionInfo)."""

    server: str
    ca_path: str | None = None
    ca_data: str | bytes | None = None
    insecure: bool = False
    token: str | None = None
    scheme: str | None = None
    username: str | None = None
    password: str | None = None
    certificate_path: str | None = None
    certificate_data: str | bytes | None = None
    private_key_path: str | None = None
    private_key_data: str | bytes | None = None

    @classmethod
    def from_connection_info(cls, info: Any) -> Credentials:
        """Copy the fields we use from a `kopf.ConnectionInfo` (duck-typed; no kopf import)."""

        def opt_path(value: Any) -> str | None:
            return os.fsdecode(value) if value else None

        return cls(
            server=str(info.server),
            ca_path=opt_path(info.ca_path),
            ca_data=info.ca_data,
            insecure=bool(info.insecure),
            token=info.token,
            scheme=info.scheme,
            username=info.username,
            password=info.password,
            certificate_path=opt_path(info.certificate_path),
            certificate_data=info.certificate_data,
            private_key_path=opt_path(info.private_key_path),
            private_key_data=info.private_key_data,
        )

    def ssl_context(self) -> ssl.SSLContext | bool:
        """TLS context trusting the cluster CA and presenting the client certificate, if any."""
        if not self.server.startswith("https"):
            return False
        if self.insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            cadata = self.ca_data.decode() if isinstance(self.ca_data, bytes) else self.ca_data
            context = ssl.create_default_context(cafile=self.ca_path, cadata=cadata)
        if self.certificate_path or self.certificate_data:
            with (
                _Materialised(self.certificate_path, self.certificate_data) as cert_file,
                _Materialised(self.private_key_path, self.private_key_data) as key_file,
            ):
                context.load_cert_chain(cert_file or "", key_file)
        return context

    def headers(self) -> dict[str, str]:
        """The Authorization header for token or basic auth."""
        if self.token:
            return {"Authorization": f"{self.scheme or 'Bearer'} {self.token}"}
        if self.username and self.password:
            encoded = aiohttp.BasicAuth(self.username, self.password).encode()
            return {"Authorization": encoded}
        return {}


class _Materialised:
    """Context manager yielding a file path for PEM given as a path or as inline data.

    `ssl.SSLContext.load_cert_chain` only reads files, so inline kubeconfig data is written to a
    private temporary file that is removed as soon as the context has loaded it.
    """

    def __init__(self, path: str | None, data: str | bytes | None) -> None:
        self._path = path
        self._data = data
        self._temp: str | None = None

    def __enter__(self) -> str | None:
        if self._path or not self._data:
            return self._path
        fd, self._temp = tempfile.mkstemp(prefix="dgd-cred-", suffix=".pem")
        with os.fdopen(fd, "wb") as handle:
            handle.write(self._data if isinstance(self._data, bytes) else self._data.encode())
        return self._temp

    def __exit__(self, *_: object) -> None:
        if self._temp:
            os.unlink(self._temp)


class KubeClient:
    """Async Kubernetes API client for plain-dict manifests (one aiohttp session)."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        field_manager: str,
        kinds: Kinds | None = None,
        timeout: float = 30.0,
        reload_credentials: Callable[[], Credentials] | None = None,
        max_in_flight: int = MAX_IN_FLIGHT_REQUESTS,
    ) -> None:
        self.credentials = credentials
        self.kinds = kinds or Kinds()
        # In-cluster service-account tokens rotate: on a 401 the credentials are read again
        # (the kubelet refreshes the token file) and the request is retried once.
        self._reload = reload_credentials
        self.field_manager = field_manager
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        self._in_flight = asyncio.Semaphore(max_in_flight)

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            async with self._lock:
                if self._session is None or self._session.closed:
                    connector = aiohttp.TCPConnector(ssl=self.credentials.ssl_context(), limit=32)
                    self._session = aiohttp.ClientSession(
                        base_url=self.credentials.server.rstrip("/"),
                        connector=connector,
                        headers=self.credentials.headers(),
                        timeout=self._timeout,
                    )
        return self._session

    def _get_watch_session(self) -> aiohttp.ClientSession:
        # Watches hold their connection for minutes, one per kind and namespace: they get a
        # session of their own without a connection limit, so requests never queue behind them.
        if self._watch_session is None or self._watch_session.closed:
            self._watch_session = aiohttp.ClientSession(
                base_url=self.credentials.server.rstrip("/"),
                connector=aiohttp.TCPConnector(ssl=self.credentials.ssl_context(), limit=0),
                headers=self.credentials.headers(),
            )
        return self._watch_session

    async def close(self) -> None:
        """Close the HTTP sessions (idempotent)."""
        sessions = [s for s in (self._session, self._watch_session) if s is not None]
        self._session = self._watch_session = None
        for session in sessions:
            await session.close()
        if sessions:
            # TLS transports finish closing on the next loop iterations; give them the chance
            # before the loop ends, or they are reported as unclosed.
            await asyncio.sleep(0.1)

    async def request(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        resource: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        decode: Decode | None = None,
    ) -> Any:
        """Send one request; return the JSON answer decoded by `decode` (default: whole) or
        text, or raise a typed `ApiError`."""
        try:
            return await self._request_once(
                method, path, verb, resource, params, body, content_type, decode
            )
        except ApiError as exc:
            if exc.status != 401 or self._reload is None:
                raise
            self.credentials = self._reload()
            await self.close()
            return await self._request_once(
                method, path, verb, resource, params, body, content_type, decode
            )

    async def _request_once(
        self,
        method: str,
        path: str,
        verb: str,
        resource: str,
        params: Mapping[str, str] | None,
        body: Any,
        content_type: str,
        decode: Decode | None,
    ) -> Any:
        metrics.API_REQUESTS.labels(verb=verb, resource=resource).inc()
        session = await self._get_session()
        url = path + ("?" + urlencode(params) if params else "")
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        try:
            async with (
                self._in_flight,
                session.request(method, url, data=data, headers=headers) as response,
            ):
                raw = await response.read()
                if response.status >= 400:
                    raise _api_error(response.status, raw.decode("utf-8", "replace"))
                if response.content_type == "application/json" and raw:
                    return (decode or orjson.loads)(raw)
                return raw.decode(response.get_encoding())
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            raise TransientError(0, "ConnectionError", f"{method} {path}: {exc!r}") from exc

    async def list_page(
        self, path: str, params: Mapping[str, str], decode: Decode | None = None
    ) -> Manifest:
        """One page of a LIST of `path` (for informers; `metadata.continue` names the next),
        decoded by `decode` (default: whole)."""
        resource = path.rstrip("/").rpartition("/")[2]
        result: Manifest = await self.request(
            "GET",
            path,
            verb="list",
            resource=resource,
            params=params,
            decode=decode,
        )
        return result

    async def watch_events(
        self, path: str, params: Mapping[str, str], decode: Decode | None = None
    ) -> AsyncIterator[Manifest]:
        """The events of one WATCH request on `path`, each decoded by `decode` (default:
        whole), until the server ends it.

        Watches hold their connection for minutes: they bypass the in-flight limit and use a
        session of their own.
        """
        resource = path.rstrip("/").rpartition("/")[2]
        metrics.API_REQUESTS.labels(verb="watch", resource=resource).inc()
        session = self._get_watch_session()
        read_timeout = float(params.get("timeoutSeconds", "300")) + 30.0
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=read_timeout)
        try:
            async with session.get(path, params=dict(params), timeout=timeout) as response:
                if response.status >= 400:
                    error = _api_error(response.status, await response.text())
                    if response.status == 401 and self._reload is not None:
                        self.credentials = self._reload()
                        await self.close()
                    raise error
                # Lines are split here, not by aiohttp's readline, which refuses lines over
                # 128 KiB (a large object with its managedFields can be one). An event that
                # arrives in many chunks is joined once, when its newline arrives.
                decode_event = decode or orjson.loads
                partial: list[bytes] = []
                async for chunk in response.content.iter_any():
                    if b"\n" not in chunk:
                        partial.append(chunk)
                        continue
                    first, *lines, rest = chunk.split(b"\n")
                    if partial:
                        partial.append(first)
                        first = b"".join(partial)
                        partial.clear()
                    for line in (first, *lines):
                        if line.strip():
                            yield decode_event(line)
                    if rest:
                        partial.append(rest)
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise TransientError(0, "ConnectionError", f"WATCH {path}: {exc!r}") from exc

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> Manifest | None:
        """Read one object; `None` when it does not exist."""
        rk = self.kinds.of(api_version, kind)
        try:
            result: Manifest = await self.request(
                "GET", rk.object_path(namespace, name), verb="get", resource=rk.plural
            )
        except NotFoundError:
            return None
        return result

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str | None = None,
    ) -> list[Manifest]:
        """List objects of a kind (in `namespace`, or everywhere when it is None)."""
        rk = self.kinds.of(api_version, kind)
        params = {"labelSelector": label_selector} if label_selector else None
        result = await self.request(
            "GET", rk.collection_path(namespace), verb="list", resource=rk.plural, params=params
        )
        items: list[Manifest] = list(result.get("items", []))
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    async def apply(
        self, manifest: Manifest, *, subresource: str | None = None, force: bool = True
    ) -> Manifest:
        """Server-side apply `manifest` under our field manager; returns the live object.

        `force=True` takes ownership of fields another manager set: the operator is the single
        source of truth for every field it sends.
        """
        meta = manifest["metadata"]
        rk = self.kinds.of(manifest["apiVersion"], manifest["kind"])
        params = {"fieldManager": self.field_manager}
        if force:
            params["force"] = "true"
        result: Manifest = await self.request(
            "PATCH",
            rk.object_path(meta.get("namespace"), meta["name"], subresource),
            verb="apply",
            resource=rk.plural if not subresource else f"{rk.plural}/{subresource}",
            params=params,
            body=manifest,
            content_type="application/apply-patch+yaml",
        )
        return result

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> Manifest:
        """JSON merge patch (RFC 7386) of one object or subresource."""
        rk = self.kinds.of(api_version, kind)
        result: Manifest = await self.request(
            "PATCH",
            rk.object_path(namespace, name, subresource),
            verb="patch",
            resource=rk.plural if not subresource else f"{rk.plural}/{subresource}",
            params={"fieldManager": self.field_manager},
            body=dict(patch),
            content_type="application/merge-patch+json",
        )
        return result

    async def json_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        operations: Sequence[Mapping[str, Any]],
    ) -> Manifest:
        """JSON patch (RFC 6902) of one object (a `metadata.resourceVersion` it sets is a
        precondition: the API server answers a conflict when the object changed)."""
        rk = self.kinds.of(api_version, kind)
        result: Manifest = await self.request(
            "PATCH",
            rk.object_path(namespace, name),
            verb="patch",
            resource=rk.plural,
            params={"fieldManager": self.field_manager},
            body=[dict(op) for op in operations],
            content_type="application/json-patch+json",
        )
        return result

    async def create(self, manifest: Manifest) -> Manifest:
        """POST a new object."""
        rk = self.kinds.of(manifest["apiVersion"], manifest["kind"])
        result: Manifest = await self.request(
            "POST",
            rk.collection_path(manifest["metadata"].get("namespace")),
            verb="create",
            resource=rk.plural,
            params={"fieldManager": self.field_manager},
            body=manifest,
        )
        return result

    async def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        uid: str | None = None,
        propagation: str = "Background",
    ) -> bool:
        """Delete one object (only if its UID still matches); False when it was already gone."""
        rk = self.kinds.of(api_version, kind)
        options: dict[str, Any] = {"propagationPolicy": propagation}
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            await self.request(
                "DELETE",
                rk.object_path(namespace, name),
                verb="delete",
                resource=rk.plural,
                body=options,
            )
        except NotFoundError:
            return False
        except ConflictError:
            # The UID precondition failed: a different object now holds that name; leave it.
            return False
        return True

    async def discover(self, path: str) -> Manifest | None:
        """GET a discovery document such as `/apis/<group>/<version>`; None when not served."""
        try:
            result = await self.request("GET", path, verb="get", resource="discovery")
        except NotFoundError:
            return None
        return result if isinstance(result, dict) else None

    async def get_raw(self, path: str) -> str:
        """GET a non-resource path such as `/metrics` and return the body text."""
        result = await self.request("GET", path, verb="get", resource=path)
        return result if isinstance(result, str) else json.dumps(result)
