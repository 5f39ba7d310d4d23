"""``python -m dgd_runtime.worker``: serve an engine (the mock engine today) over NATS.

Environment (what the operator sets): ``NATS_SERVER``, ``DYN_NAMESPACE`` (+
``DYN_NAMESPACE_WORKER_SUFFIX``), ``DYN_COMPONENT`` (component *type*: ``prefill`` workers serve
the ``prefill`` component, every other type ``backend``), ``DYN_SYSTEM_PORT`` (status server;
off when unset), ``DYN_SYSTEM_HOST`` (default 0.0.0.0, the probes come from the kubelet).
SIGTERM/SIGINT: deregister, let in-flight requests finish for ``--drain-timeout`` s, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgd_runtime.protocol import ModelCard

log = logging.getLogger("dgd_runtime.worker")


@dataclass(slots=True, frozen=True)
class ModelInfo:
    """What the worker reads from a local HF-style model directory."""

    path: str
    context_length: int
    vocab_size: int
    """Ids the mock engine may emit: the tokenizer's base vocabulary (no special tokens)."""
    eos_token_ids: tuple[int, ...]


def read_model_dir(model_path: str) -> ModelInfo:
    """Read config.json (context length, vocab size, eos) and tokenizer.json (vocab) of a dir."""
    root = Path(model_path)
    config_file = root / "config.json"
    if not config_file.is_file():
        raise ValueError(
            f"--model-path {model_path}: no config.json (need a local HF-style model dir)"
        )
    config: dict[str, Any] = json.loads(config_file.read_text(encoding="utf-8"))
    context = int(
        config.get("max_position_embeddings")
        or config.get("max_sequence_length")
        or config.get("seq_length")
        or 4096
    )
    vocab = int(config.get("vocab_size") or 32000)
    eos_raw = config.get("eos_token_id")
    gen_file = root / "generation_config.json"
    if gen_file.is_file():
        gen = json.loads(gen_file.read_text(encoding="utf-8"))
        eos_raw = gen.get("eos_token_id", eos_raw)
    eos: tuple[int, ...]
    if isinstance(eos_raw, list):
        eos = tuple(int(x) for x in eos_raw)
    elif eos_raw is None:
        eos = ()
    else:
        eos = (int(eos_raw),)
    tok_file = root / "tokenizer.json"
    if tok_file.is_file():
        from tokenizers import Tokenizer

        base = int(Tokenizer.from_file(str(tok_file)).get_vocab_size(with_added_tokens=False))
        if base > 0:
            vocab = min(vocab, base)
    return ModelInfo(str(root), context, vocab, eos)


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


def default_component() -> str:
    """``prefill`` for prefill workers, else ``backend`` (Dynamo's endpoint names)."""
    return "prefill" if os.environ.get("DYN_COMPONENT", "").lower() == "prefill" else "backend"


def build_parser() -> argparse.ArgumentParser:
    """The worker's command line."""
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m dgd_runtime.worker", description=__doc__)
    p.add_argument(
        "--model-path", required=True, help="local HF-style model dir (config.json, tokenizer.json)"
    )
    p.add_argument(
        "--model-name",
        "--served-model-name",
        dest="model_name",
        default=None,
        help="name clients use (default: --model-path as given)",
    )
    p.add_argument("--engine", choices=["mock"], default="mock")
    p.add_argument(
        "--namespace",
        default=None,
        help="default $DYN_NAMESPACE[-$DYN_NAMESPACE_WORKER_SUFFIX] or dynamo",
    )
    p.add_argument("--component", default=None, help="default from $DYN_COMPONENT: prefill|backend")
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
    p.add_argument("--registration-ttl", type=float, default=3.0)
    p.add_argument("--instance-id", default="")
    p.add_argument(
        "--context-length", "--max-model-len", dest="context_length", type=int, default=None
    )
    mock = p.add_argument_group("mock engine")
    mock.add_argument("--speedup-ratio", type=float, default=1.0)
    mock.add_argument("--block-size", type=int, default=64)
    mock.add_argument(
        "--num-gpu-blocks",
        "--num-gpu-blocks-override",
        dest="num_gpu_blocks",
        type=int,
        default=16384,
    )
    mock.add_argument("--max-num-seqs", type=int, default=256)
    mock.add_argument("--max-num-batched-tokens", type=int, default=8192)
    mock.add_argument(
        "--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=True
    )
    p.add_argument("--log-level", default=env("DYN_LOG") or "info")
    return p


async def run_worker(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    from dgd_runtime.engines.mock import MockEngine, MockEngineConfig
    from dgd_runtime.system_server import SystemServer
    from dgd_runtime.workers.service import Worker, WorkerSettings

    info = read_model_dir(args.model_path)
    namespace, component, endpoint = parse_endpoint(
        args.endpoint, args.namespace or default_namespace(), args.component or default_component()
    )
    context = args.context_length or info.context_length
    engine = MockEngine(
        MockEngineConfig(
            block_size=args.block_size,
            num_gpu_blocks=args.num_gpu_blocks,
            max_num_seqs=args.max_num_seqs,
            max_num_batched_tokens=args.max_num_batched_tokens,
            speedup_ratio=args.speedup_ratio,
            enable_prefix_caching=args.enable_prefix_caching,
            vocab_size=info.vocab_size,
            context_length=context,
        )
    )
    card = ModelCard(
        name=args.model_name or args.model_path,
        model_path=str(Path(args.model_path).resolve()),
        context_length=context,
        kv_block_size=args.block_size,
        extra={
            "engine": args.engine,
            "total_kv_blocks": args.num_gpu_blocks,
            "max_num_seqs": args.max_num_seqs,
            "eos_token_ids": list(info.eos_token_ids),
        },
    )
    worker = Worker(
        engine,
        card,
        WorkerSettings(
            nats_url=args.nats_server,
            namespace=namespace,
            component=component,
            endpoint=endpoint,
            instance_id=args.instance_id,
            heartbeat_interval=args.heartbeat_interval,
            ttl=args.registration_ttl,
            drain_timeout=args.drain_timeout,
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
            await stopping
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        log.info("shutting down (drain up to %.0fs)", args.drain_timeout)
    finally:
        await worker.shutdown()
        if system is not None:
            await system.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a runtime dependency on Linux
        runner = asyncio.run
    try:
        return int(runner(run_worker(args)))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
