"""`python -m dgd_runtime.frontend`: the OpenAI-compatible HTTP frontend.

Flags and environment follow Dynamo's frontend where they overlap:
`--http-port` ($DYN_HTTP_PORT, 8000), `--http-host` ($DYN_HTTP_HOST, 127.0.0.1 here; pass
0.0.0.0 explicitly in a cluster), `--router-mode` ($DYN_ROUTER_MODE), `--namespace`
($DYN_NAMESPACE, else $DYN_NAMESPACE_PREFIX, else "dynamo"), `--nats-server` ($NATS_SERVER).
Request limits (dgd's own): `--http-max-body-bytes` ($DGD_HTTP_MAX_BODY_BYTES, 8 MiB; larger
bodies get 413), `--http-max-header-bytes` ($DGD_HTTP_MAX_HEADER_BYTES, 64 KiB) and
`--http-max-headers` ($DGD_HTTP_MAX_HEADERS, 100; more get 431).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Sequence

from dgd_runtime.frontend.app import start_frontend
from dgd_runtime.frontend.http import HttpLimits
from dgd_runtime.logs import configure_logging
from dgd_runtime.protocol import (
    EngineOutput,
    ModelCard,
    NoWorkersError,
    PreprocessedRequest,
    WorkerInstance,
)
from dgd_runtime.router.disagg import StagedClient
from dgd_runtime.transport.client import TokenSink

LOG = logging.getLogger("dgd_runtime.frontend")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags (defaults from the environment)."""
    env = os.environ
    ap = argparse.ArgumentParser(
        prog="python -m dgd_runtime.frontend",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--http-host", default=env.get("DYN_HTTP_HOST", "127.0.0.1"))
    ap.add_argument("--http-port", type=int, default=int(env.get("DYN_HTTP_PORT", "8000")))
    ap.add_argument(
        "--router-mode",
        default=env.get("DYN_ROUTER_MODE") or None,
        help="round-robin | random | kv (default: $DYN_ROUTER_MODE or round-robin)",
    )
    ap.add_argument(
        "--namespace",
        default=env.get("DYN_NAMESPACE") or env.get("DYN_NAMESPACE_PREFIX") or "dynamo",
    )
    ap.add_argument(
        "--namespace-prefix",
        default=env.get("DYN_NAMESPACE_PREFIX") or None,
        help="also route to workers in <prefix>-<suffix> namespaces (the operator's "
        "per-rollout worker suffix); default: $DYN_NAMESPACE_PREFIX",
    )
    ap.add_argument("--component", default="backend")
    ap.add_argument("--endpoint", default="generate")
    ap.add_argument("--nats-server", default=env.get("NATS_SERVER") or "nats://127.0.0.1:4222")
    ap.add_argument("--log-level", default=env.get("DYN_LOG", "info"))
    limits = HttpLimits()
    for flag, var, default in (
        ("--http-max-body-bytes", "DGD_HTTP_MAX_BODY_BYTES", limits.max_body_bytes),
        ("--http-max-header-bytes", "DGD_HTTP_MAX_HEADER_BYTES", limits.max_header_bytes),
        ("--http-max-headers", "DGD_HTTP_MAX_HEADERS", limits.max_headers),
    ):
        ap.add_argument(flag, type=_positive_int, default=env.get(var) or default)
    args = ap.parse_args(argv)
    if args.namespace_prefix:
        args.namespace = args.namespace_prefix
    return args


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


class LazyBackend:
    """Serves "no workers" until the router client is connected, then delegates to it."""

    def __init__(self) -> None:
        self.client: StagedClient | None = None

    def models(self) -> Sequence[ModelCard]:
        """Models of live workers (none while NATS is not connected yet)."""
        return [] if self.client is None else self.client.models()

    def instances(self) -> list[WorkerInstance]:
        """Live worker instances (for /health)."""
        return [] if self.client is None else self.client.instances()

    def generate(
        self, request: PreprocessedRequest, *, sink: TokenSink | None = None
    ) -> AsyncIterator[EngineOutput]:
        """Delegate to the staged client (encode → prefill → decode as the model has them)."""
        if self.client is None:
            return _no_workers()
        return self.client.generate(request, sink=sink)


async def _no_workers() -> AsyncIterator[EngineOutput]:
    raise NoWorkersError("not connected to NATS yet")
    yield  # pragma: no cover - makes this an async generator


async def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM."""
    backend = LazyBackend()
    limits = HttpLimits(args.http_max_body_bytes, args.http_max_header_bytes, args.http_max_headers)
    running = await start_frontend(backend, args.http_host, args.http_port, limits)
    LOG.info("frontend listening on %s (namespace %s)", running.url, args.namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def connect() -> None:
        delay = 0.25
        while not stop.is_set():
            try:
                client = await StagedClient.connect(
                    args.nats_server,
                    namespace=args.namespace,
                    component=args.component,
                    endpoint=args.endpoint,
                    router_mode=args.router_mode,
                    namespace_prefix=bool(args.namespace_prefix),
                    record_mode=running.frontend.metrics.disagg_requests.inc,
                )
            except Exception as exc:  # OSError, TimeoutError and nats' own error types
                LOG.warning("cannot reach NATS at %s (%s); retrying", args.nats_server, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            backend.client = client
            LOG.info("connected to NATS at %s", args.nats_server)
            return

    connector = loop.create_task(connect())
    await stop.wait()
    LOG.info("shutting down")
    connector.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await connector
    await running.close()
    if backend.client is not None:
        await backend.client.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        import uvloop

        return int(uvloop.run(run(args)))
    except ImportError:
        return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
