"""`dgd serve FILE`: run a DynamoGraphDeployment locally with the mock engine (no cluster)."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "run a DGD locally: nats-server, mock-engine workers and the OpenAI frontend"
DESCRIPTION = """\
Run a DynamoGraphDeployment on this machine without Kubernetes or GPUs: an embedded
nats-server, one mock-engine worker process per replica of each worker service
(componentType worker, prefill, decode) and the OpenAI-compatible frontend, all bound to
127.0.0.1. Prints the URL and a ready-to-paste curl; Ctrl-C stops every process.

The model directory (tokenizer + chat template, no weights) defaults to a tiny offline one
built into ~/.cache/dgd; the served model name comes from the workers' --model argument.
"""


def register(subparsers: Any) -> None:
    """Add the `serve` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="DGD YAML file, or - for stdin")
    parser.add_argument(
        "--port",
        type=int,
        default=8000,
        help="frontend HTTP port on 127.0.0.1 (default 8000; 0 = any free port)",
    )
    parser.add_argument(
        "--model-path",
        default=None,
        help="local HF-style model directory (tokenizer.json, config.json)",
    )
    parser.add_argument(
        "--router-mode",
        default=None,
        choices=("round-robin", "random", "kv"),
        help="frontend routing policy (default round-robin)",
    )
    parser.add_argument(
        "--speedup-ratio",
        type=float,
        default=1.0,
        help="mock engine speed multiplier (default 1.0 = simulated GPU timing)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    from dgd_runtime.serve import run_serve

    return run_serve(
        args.file,
        model_path=args.model_path,
        port=args.port,
        router_mode=args.router_mode,
        speedup_ratio=args.speedup_ratio,
    )
