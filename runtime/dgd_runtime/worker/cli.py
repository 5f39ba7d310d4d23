"""``python -m dgd_runtime.worker``: serve an engine over NATS (``--engine``, default ``mock``).

Environment (what the operator sets): ``NATS_SERVER``, ``DYN_NAMESPACE`` (+
``DYN_NAMESPACE_WORKER_SUFFIX``), ``DYN_COMPONENT`` (component *type*: ``prefill`` workers serve
the ``prefill`` component, every other type ``backend``; ``prefill``/``decode`` also set the
role the worker registers with, overridden by ``--disaggregation-mode``), ``DYN_SYSTEM_PORT`` (status server;
off when unset), ``DYN_SYSTEM_HOST`` (default 0.0.0.0, the probes come from the kubelet).
SIGTERM/SIGINT: deregister, let in-flight requests finish for ``--drain-timeout`` s, exit 0.
An engine that dies after starting: new requests are refused at once, requests that have sent
nothing are refused too (the frontend runs them on another worker), streams in progress end
with an "engine died" error; the worker deregisters and exits 1 (so it is restarted).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from dgd_runtime.engines.base import EngineSpec, ModelInfo
from dgd_runtime.engines.registry import EngineError, engine_names, load_engine
from dgd_runtime.logs import configure_logging
from dgd_runtime.protocol import ModelCard
from dgd_runtime.worker.model_dir import read_model_dir

if TYPE_CHECKING:
    from dgd_runtime.worker.service import WorkerRole

log = logging.getLogger("dgd_runtime.worker")

WORKER_REGISTRATION_TTL = 10.0
"""Seconds of heartbeat silence before frontends drop a worker (Dynamo's lease TTL is 10 s too).

Not 3 s: a worker whose event loop is starved (a real engine's output processing at high
concurrency on a loaded machine) missed three 1 s heartbeats, and frontends then failed its
healthy streams and answered 503 "no workers available". A worker that dies is still noticed
at once: its request subject has no responders any more.
"""


def parse_endpoint(value: str, namespace: str, component: str) -> tuple[str, str, str]:
    """``dyn://ns.component.endpoint`` (or a bare endpoint name) -> its three parts."""
    if value.startswith("dyn://"):
        parts = value[len("dyn://") :].split(".")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"--endpoint {value!r}: expected dyn://namespace.component.endpoint")
        return parts[0], parts[1], parts[2]
    return namespace, component, value


def default_namespace() -> str:
    """``$DYN_NAMESPACE`` (default ``dynamo``) with ``-$DYN_NAMESPACE_WORKER_SUFFIX`` if set."""
    ns = os.environ.get("DYN_NAMESPACE") or "dynamo"
    suffix = os.environ.get("DYN_NAMESPACE_WORKER_SUFFIX")
    return f"{ns}-{suffix}" if suffix else ns


def default_component(role: str | None = None) -> str:
    """``prefill`` for prefill workers, else ``backend`` (Dynamo's endpoint names)."""
    return "prefill" if (role or default_role()) == "prefill" else "backend"


def default_role() -> WorkerRole:
    """The role ``$DYN_COMPONENT`` implies: ``prefill``, ``decode``, else ``aggregated``."""
    kind = os.environ.get("DYN_COMPONENT", "").lower()
    return "prefill" if kind == "prefill" else "decode" if kind == "decode" else "aggregated"


def worker_role(args: argparse.Namespace) -> WorkerRole:
    """The role from ``--disaggregation-mode`` / ``--is-*-worker``, else the environment's."""
    if args.is_prefill_worker:
        return "prefill"
    if args.is_decode_worker:
        return "decode"
    mode = args.disaggregation_mode
    if mode is None:
        return default_role()
    return "aggregated" if mode == "agg" else cast("WorkerRole", mode)


def build_parser() -> argparse.ArgumentParser:
    """The worker's generic command line (the chosen engine adds its own group)."""
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m dgd_runtime.worker", description=__doc__)
    p.add_argument(
        "--model-path",
        "--model",
        dest="model_path",
        required=True,
        help="local HF-style model dir (config.json, tokenizer.json); --model as NVIDIA's vLLM "
        "image takes it",
    )
    p.add_argument(
        "--model-name",
        "--served-model-name",
        dest="model_name",
        default=None,
        help="name clients use (default: --model-path as given)",
    )
    p.add_argument(
        "--engine",
        default="mock",
        help=f"the engine to serve: {' | '.join(engine_names())} (default mock)",
    )
    p.add_argument(
        "--namespace",
        default=None,
        help="default $DYN_NAMESPACE[-$DYN_NAMESPACE_WORKER_SUFFIX] or dynamo",
    )
    p.add_argument("--component", default=None, help="default from the role: prefill|backend")
    p.add_argument(
        "--disaggregation-mode",
        choices=("agg", "prefill", "decode"),
        default=None,
        help="the worker's role in disaggregated serving (default from $DYN_COMPONENT, else agg)",
    )
    p.add_argument(
        "--is-prefill-worker", action="store_true", help="= --disaggregation-mode prefill"
    )
    p.add_argument("--is-decode-worker", action="store_true", help="= --disaggregation-mode decode")
    p.add_argument(
        "--endpoint", default="generate", help="endpoint name or dyn://ns.component.endpoint"
    )
    p.add_argument("--nats-server", default=env("NATS_SERVER") or "nats://127.0.0.1:4222")
    p.add_argument("--system-host", default=env("DYN_SYSTEM_HOST") or "0.0.0.0")
    p.add_argument(
        "--system-port",
        type=int,
        default=int(env("DYN_SYSTEM_PORT") or -1),
        help="status server port (/live, /health, /metrics); -1 = off (default $DYN_SYSTEM_PORT)",
    )
    p.add_argument("--drain-timeout", type=float, default=30.0)
    p.add_argument("--heartbeat-interval", type=float, default=1.0)
    p.add_argument(
        "--registration-ttl",
        type=float,
        default=WORKER_REGISTRATION_TTL,
        help="seconds without a heartbeat before frontends drop this worker (default %(default)s)",
    )
    p.add_argument("--instance-id", default="")
    p.add_argument(
        "--context-length",
        "--max-model-len",
        dest="context_length",
        type=int,
        default=None,
        help="longest prompt plus output (default: the model's)",
    )
    p.add_argument("--log-level", default=env("DYN_LOG") or "info")
    return p


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, EngineSpec]:
    """Parse the command line in two passes: ``--engine`` first, then with its options.

    Raises :class:`~dgd_runtime.engines.registry.EngineError` for an unknown or unavailable
    engine (before any other option is checked, so the message names the real problem).
    """
    chooser = argparse.ArgumentParser(add_help=False)
    chooser.add_argument("--engine", default="mock")
    chosen, _ = chooser.parse_known_args(argv)
    spec = load_engine(chosen.engine)
    parser = build_parser()
    spec.add_cli_arguments(parser)
    return parser.parse_args(argv), spec


def initial_card(args: argparse.Namespace, model: ModelInfo) -> ModelCard:
    """The card before the engine starts; the worker fills in the engine's limits at start."""
    context = args.context_length or model.context_length
    return ModelCard(
        name=args.model_name or args.model_path,
        model_path=str(Path(args.model_path).resolve()),
        context_length=context,
        kv_block_size=0,
        extra={"engine": args.engine, "eos_token_ids": list(model.eos_token_ids)},
    )


async def run_worker(args: argparse.Namespace, spec: EngineSpec) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    from dgd_runtime.worker.service import Worker, WorkerSettings
    from dgd_runtime.worker.system_server import SystemServer

    model = read_model_dir(args.model_path)
    role = worker_role(args)
    namespace, component, endpoint = parse_endpoint(
        args.endpoint,
        args.namespace or default_namespace(),
        args.component or default_component(role),
    )
    engine = spec.from_cli(args, model)
    worker = Worker(
        engine,
        initial_card(args, model),
        WorkerSettings(
            nats_url=args.nats_server,
            namespace=namespace,
            component=component,
            endpoint=endpoint,
            instance_id=args.instance_id,
            heartbeat_interval=args.heartbeat_interval,
            ttl=args.registration_ttl,
            drain_timeout=args.drain_timeout,
            role=role,
        ),
    )
    system: SystemServer | None = None
    if args.system_port >= 0:
        # Up before the worker registers, so /live answers while the engine loads.
        system = SystemServer(
            worker, host=args.system_host, port=args.system_port, engine_name=args.engine
        )
        await system.start()
        log.info("system server on %s:%d", args.system_host, system.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    rc = 0
    try:
        # Starting waits for NATS (pods may start before it); a SIGTERM meanwhile still exits.
        starting = asyncio.create_task(worker.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()
            print(
                f"dgd worker ready instance={worker.instance.instance_id} "
                f"subject={worker.instance.subject}",
                flush=True,
            )
            died = asyncio.create_task(worker.wait_engine_death())
            await asyncio.wait({stopping, died}, return_when=asyncio.FIRST_COMPLETED)
            if died.done():
                if (exc := died.exception()) is not None:
                    log.error("ending the dead engine's requests failed: %r", exc)
                log.error("the engine died; exiting so the worker is restarted")
                rc = 1
            else:
                died.cancel()
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        log.info("shutting down (drain up to %.0fs)", args.drain_timeout)
    finally:
        await worker.shutdown()
        if system is not None:
            await system.stop()
    return rc


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    try:
        args, spec = parse_args(argv)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a runtime dependency on Linux
        runner = asyncio.run
    try:
        return int(runner(run_worker(args, spec)))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
