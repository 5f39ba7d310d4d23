"""Reaching executed pods from the host: `dgd dev logs` and `dgd dev port-forward`.

Pods executed by the fake kubelet run as local processes listening on their loopback address
(:func:`~dgd_operator.dev.kubelet.loopback_address` of the pod IP); their output is in
``<state>/pods/<namespace>_<pod>_<uid8>/<container>.log``.

``kubectl logs`` works too: the kubelet serves ``/containerLogs`` (kubelet_api.py) and
executing nodes advertise it. ``kubectl port-forward`` would need the kubelet's streaming API
(SPDY/WebSocket upgrades relayed by the API server), so ``port-forward`` here proxies a local
port to a ready endpoint of the Service itself, picked again for each connection (so it follows
a replaced pod, unlike kubectl's, which stays on one pod). ``logs`` reads the files directly
(no API server round trip; works while the API server is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

from dgd_operator.dev.kubelet import loopback_address
from dgd_operator.dev.rest import ApiError, JsonDict, KubeRest


class AccessError(RuntimeError):
    """A pod, Service, port or log that cannot be found (the message says which)."""


def pod_log_path(state_dir: Path, pod: JsonDict, container: str | None) -> Path:
    """The log file of ``container`` (default: the pod's first container) of an executed pod."""
    meta = pod["metadata"]
    names = [c["name"] for c in pod["spec"].get("containers", [])]
    chosen = container or names[0]
    if chosen not in names:
        raise AccessError(f"pod {meta['name']} has no container {chosen!r}; it has {names}")
    path = (
        state_dir
        / "pods"
        / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"
        / f"{chosen}.log"
    )
    if not path.exists():
        raise AccessError(
            f"no log for {meta['namespace']}/{meta['name']} container {chosen}: the pod is "
            "simulated (its command is not one the dgd dev kubelet runs; see its Events) or has "
            "not started yet"
        )
    return path


def show_logs(
    rest: KubeRest,
    state_dir: Path,
    namespace: str,
    pod_name: str,
    container: str | None,
    *,
    follow: bool = False,
) -> int:
    """Print an executed container's log (``follow``: keep printing while the pod exists)."""
    try:
        pod = rest.get(f"/api/v1/namespaces/{namespace}/pods/{pod_name}")
    except ApiError as exc:
        raise AccessError(f"pod {namespace}/{pod_name}: {exc}") from exc
    path = pod_log_path(state_dir, pod, container)
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(65536)
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                continue
            if not follow or not rest.exists(f"/api/v1/namespaces/{namespace}/pods/{pod_name}"):
                return 0
            time.sleep(0.3)


def _service_target(rest: KubeRest, namespace: str, name: str, port: int) -> tuple[str, int]:
    service = rest.get(f"/api/v1/namespaces/{namespace}/services/{name}")
    ports = service["spec"].get("ports") or []
    match = next((p for p in ports if int(p.get("port", 0)) == port), None)
    if match is None:
        known = [p.get("port") for p in ports]
        raise AccessError(f"service {name} has no port {port}; it has {known}")
    port_name = match.get("name", "")
    slices = rest.get(
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
        labelSelector=f"kubernetes.io/service-name={name}",
    ).get("items", [])
    for item in slices:
        target = next(
            (p["port"] for p in item.get("ports") or [] if p.get("name", "") == port_name), None
        )
        for endpoint in item.get("endpoints") or []:
            if target and (endpoint.get("conditions") or {}).get("ready"):
                return loopback_address(endpoint["addresses"][0]), int(target)
    raise AccessError(f"service {namespace}/{name} has no ready endpoint")


def resolve_target(rest: KubeRest, namespace: str, resource: str, port: int) -> tuple[str, int]:
    """``svc/NAME`` or ``pod/NAME`` (or ``NAME``, a pod) and a port -> the loopback address
    and port to connect to now."""
    kind, _, name = resource.rpartition("/")
    if kind in ("svc", "service", "services"):
        return _service_target(rest, namespace, name, port)
    if kind in ("", "pod", "pods"):
        pod = rest.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        ip = pod.get("status", {}).get("podIP")
        if not ip:
            raise AccessError(f"pod {namespace}/{name} has no IP yet")
        return loopback_address(ip), port
    raise AccessError(f"cannot forward to {resource!r}: use svc/NAME or pod/NAME")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


async def forward(
    rest: KubeRest, namespace: str, resource: str, local_port: int, remote_port: int
) -> None:
    """Serve 127.0.0.1:``local_port``, proxying each connection to the target resolved then."""

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            host, port = await asyncio.to_thread(
                resolve_target, rest, namespace, resource, remote_port
            )
            upstream_r, upstream_w = await asyncio.open_connection(host, port)
        except (AccessError, ApiError, OSError) as exc:
            print(f"port-forward: {exc}", file=sys.stderr, flush=True)
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, upstream_w), _pipe(upstream_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", local_port)
    host, port = resolve_target(rest, namespace, resource, remote_port)
    print(
        f"Forwarding from 127.0.0.1:{local_port} -> {resource} port {remote_port} "
        f"(now {host}:{port})",
        flush=True,
    )
    async with server:
        await server.serve_forever()
