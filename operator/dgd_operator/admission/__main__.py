"""`python -m dgd_operator.admission`: the webhook server alone (local control plane, tests).

Serves conversion, validation and defaulting on `--host`:`--port` with the certificate in
`--cert-dir` (issued there for `--host` when missing; `ca.crt` is the caBundle to register).
Prints one line `serving https://HOST:PORT` once listening; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from dgd_operator.admission.certificates import write_self_signed
from dgd_operator.admission.review import AdmissionPolicy
from dgd_operator.admission.server import WebhookServer
from dgd_operator.admission.webhooks import review_handlers
from dgd_operator.api.constants import DYNAMO_COMPATIBLE_VERSION


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m dgd_operator.admission")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, required=True, help="HTTPS port")
    parser.add_argument("--cert-dir", type=Path, required=True, help="tls.crt, tls.key, ca.crt")
    parser.add_argument("--origin-version", default=DYNAMO_COMPATIBLE_VERSION)
    parser.add_argument("--operator-username", default=None)
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGTERM/SIGINT."""
    files = write_self_signed(args.cert_dir, [args.host])
    policy = AdmissionPolicy(operator_username=args.operator_username)
    server = WebhookServer(
        review_handlers(policy, origin_version=args.origin_version),
        files,
        host=args.host,
        port=args.port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    print(f"serving https://{args.host}:{server.port}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
