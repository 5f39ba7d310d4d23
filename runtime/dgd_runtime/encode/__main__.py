"""``python -m dgd_runtime.encode``: serve the ``encode`` component (mock vision/audio tower).

Environment as for the worker: ``NATS_SERVER``, ``DYN_NAMESPACE`` (+
``DYN_NAMESPACE_WORKER_SUFFIX``). SIGTERM/SIGINT: deregister, drain, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from dgd_runtime.encode.encoder import DEFAULT_HIDDEN_SIZE
from dgd_runtime.encode.service import EncodeSettings, EncodeWorker


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The encode worker's command line."""
    env = os.environ.get
    ns = env("DYN_NAMESPACE") or "dynamo"
    suffix = env("DYN_NAMESPACE_WORKER_SUFFIX")
    p = argparse.ArgumentParser(prog="python -m dgd_runtime.encode", description=__doc__)
    p.add_argument("--model-path", "--model", dest="model_path", required=True)
    p.add_argument("--model-name", "--served-model-name", dest="model_name", default=None)
    p.add_argument("--namespace", default=f"{ns}-{suffix}" if suffix else ns)
    p.add_argument("--nats-server", default=env("NATS_SERVER") or "nats://127.0.0.1:4222")
    p.add_argument("--hidden-size", type=int, default=DEFAULT_HIDDEN_SIZE)
    p.add_argument("--instance-id", default="")
    p.add_argument("--heartbeat-interval", type=float, default=1.0)
    p.add_argument("--registration-ttl", type=float, default=3.0)
    p.add_argument("--log-level", default=env("DYN_LOG") or "info")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT."""
    worker = EncodeWorker(
        EncodeSettings(
            nats_url=args.nats_server,
            model_name=args.model_name or args.model_path,
            model_path=str(Path(args.model_path).resolve()),
            namespace=args.namespace,
            instance_id=args.instance_id,
            hidden_size=args.hidden_size,
            heartbeat_interval=args.heartbeat_interval,
            ttl=args.registration_ttl,
        )
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await worker.start()
    print(
        f"dgd worker ready instance={worker.instance.instance_id} "
        f"subject={worker.instance.subject}",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await worker.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
